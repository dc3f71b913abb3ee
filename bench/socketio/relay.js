// A minimal Socket.IO live chat relay: what many live chat products start from, run by
// `livechat-bench --compare-socketio DIR` under the same load as livechat, on the same
// machine, in the same run. It relays and acknowledges, nothing more: no authentication, no
// storage, no event log, no replay after a reconnect. So it is a floor for what a product
// built on it costs, not a product.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}');
  } else {
    res.writeHead(404);
    res.end();
  }
});

const io = new Server(httpServer, {
  serveClient: false,
  // The bench connects over WebSocket at once, as livechat's clients do; no long-polling.
  transports: ["websocket"],
  perMessageDeflate: false,
});

io.on("connection", (socket) => {
  // Each socket names itself in the handshake (`?name=v12` for a visitor, `a3` for an
  // agent) and is reachable under that name.
  const name = socket.handshake.query.name;
  if (typeof name === "string" && name.length > 0) {
    socket.join(name);
  }
  // `{to, text}`: relayed to the socket named `to`, acknowledged to the sender.
  socket.on("message", (msg, ack) => {
    if (msg && typeof msg.to === "string") {
      io.to(msg.to).emit("message", msg);
    }
    if (typeof ack === "function") {
      ack({ ok: true });
    }
  });
});

httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`relay listening on http://127.0.0.1:${httpServer.address().port}`);
});

process.on("SIGTERM", () => process.exit(0));
