/* The widget's video calls: loaded by widget.js the first time a call is offered or
 * starts (page views without one never fetch it). Peer to peer with the agent's console,
 * which makes the WebRTC offer; this side answers. The server only passes the signalling
 * on. `window.__livechatCall(w)` gets what it needs of the widget (`w`: its element
 * builder, buttons, actions, socket, panel) and answers the four things a call does. */
(function () {
  "use strict";
  // Every text in every language the widget speaks (a unit test checks).
  const STR = {
    en: {
      offer: "{} invites you to a video call",
      join: "Join with camera",
      audio: "Audio only",
      decline: "Decline",
      mute: "Mute",
      unmute: "Unmute",
      camoff: "Camera off",
      camon: "Camera on",
      share: "Share screen",
      unshare: "Stop sharing",
      hangup: "Hang up",
      callended: "Call ended",
      muted: "Muted",
      nocam: "Camera off",
      calling: "Connecting the call…",
    },
    de: {
      offer: "{} lädt Sie zu einem Videoanruf ein",
      join: "Mit Kamera beitreten",
      audio: "Nur Audio",
      decline: "Ablehnen",
      mute: "Stumm",
      unmute: "Ton an",
      camoff: "Kamera aus",
      camon: "Kamera an",
      share: "Bildschirm teilen",
      unshare: "Teilen beenden",
      hangup: "Auflegen",
      callended: "Anruf beendet",
      muted: "Stumm",
      nocam: "Kamera aus",
      calling: "Anruf wird verbunden…",
    },
    es: {
      offer: "{} le invita a una videollamada",
      join: "Unirse con cámara",
      audio: "Solo audio",
      decline: "Rechazar",
      mute: "Silenciar",
      unmute: "Activar sonido",
      camoff: "Apagar cámara",
      camon: "Encender cámara",
      share: "Compartir pantalla",
      unshare: "Dejar de compartir",
      hangup: "Colgar",
      callended: "Llamada terminada",
      muted: "Silenciado",
      nocam: "Cámara apagada",
      calling: "Conectando la llamada…",
    },
    fr: {
      offer: "{} vous invite à un appel vidéo",
      join: "Rejoindre avec la caméra",
      audio: "Audio seulement",
      decline: "Refuser",
      mute: "Couper le micro",
      unmute: "Activer le micro",
      camoff: "Couper la caméra",
      camon: "Activer la caméra",
      share: "Partager l'écran",
      unshare: "Arrêter le partage",
      hangup: "Raccrocher",
      callended: "Appel terminé",
      muted: "Micro coupé",
      nocam: "Caméra coupée",
      calling: "Connexion de l'appel…",
    },
    it: {
      offer: "{} ti invita a una videochiamata",
      join: "Partecipa con la fotocamera",
      audio: "Solo audio",
      decline: "Rifiuta",
      mute: "Disattiva audio",
      unmute: "Attiva audio",
      camoff: "Spegni fotocamera",
      camon: "Accendi fotocamera",
      share: "Condividi schermo",
      unshare: "Interrompi condivisione",
      hangup: "Riaggancia",
      callended: "Chiamata terminata",
      muted: "Audio disattivato",
      nocam: "Fotocamera spenta",
      calling: "Collegamento della chiamata…",
    },
    nl: {
      offer: "{} nodigt je uit voor een videogesprek",
      join: "Deelnemen met camera",
      audio: "Alleen audio",
      decline: "Weigeren",
      mute: "Dempen",
      unmute: "Dempen opheffen",
      camoff: "Camera uit",
      camon: "Camera aan",
      share: "Scherm delen",
      unshare: "Delen stoppen",
      hangup: "Ophangen",
      callended: "Gesprek beëindigd",
      muted: "Gedempt",
      nocam: "Camera uit",
      calling: "Gesprek wordt verbonden…",
    },
    pt: {
      offer: "{} convida você para uma videochamada",
      join: "Entrar com câmera",
      audio: "Só áudio",
      decline: "Recusar",
      mute: "Silenciar",
      unmute: "Ativar som",
      camoff: "Desligar câmera",
      camon: "Ligar câmera",
      share: "Compartilhar tela",
      unshare: "Parar de compartilhar",
      hangup: "Desligar",
      callended: "Chamada encerrada",
      muted: "Silenciado",
      nocam: "Câmera desligada",
      calling: "Conectando a chamada…",
    },
  };

  window.__livechatCall = function (w) {
    const T = Object.assign({}, STR.en, STR[String(w.lang() || "en").split("-")[0]] || {});
    let rtc = null;
    function offerCall() {
      const box = w.h("div", { class: "lc-prompt lc-offer" });
      const answer = (accept, cam) => () => (w.camera(cam), w.act({ type: accept ? "accept_video" : "decline_video" }, box));
      box.append(w.h("div", { class: "lc-note", text: T.offer.replace("{}", w.agent()) }),
        w.btn(T.join, "lc-primary lc-join", answer(true, true)), w.btn(T.audio, "lc-secondary lc-audio", answer(true, false)),
        w.btn(T.decline, "lc-minor lc-decline", answer(false, false)));
      w.setPrompt(box);
    }
    async function startCall() {
      if (rtc) return;
      const remote = w.h("video", { class: "lc-remote", autoplay: true, playsinline: true });
      const local = w.h("video", { class: "lc-local", autoplay: true, playsinline: true });
      local.muted = true;
      const state = w.h("div", { class: "lc-call-state", role: "status", text: T.calling });
      const timer = w.h("span", { class: "lc-timer", text: "0:00" });
      const view = w.h("div", { class: "lc-call" }, remote, local, state);
      const c = (rtc = { view, remote, local, state, pending: [], pc: null, stream: null, screen: null, cam: null });
      const toggle = (cls, on, off, kind) => {
        const b = w.btn(on, cls, () => {
          const t = c.stream && c.stream.getTracks().find((x) => x.kind === kind);
          if (!t) return;
          t.enabled = !t.enabled;
          b.textContent = t.enabled ? on : off;
          b.setAttribute("aria-pressed", String(!t.enabled));
          tellState();
        });
        return b;
      };
      const share = w.btn(T.share, "lc-minor lc-share", () => (c.screen ? unshare() : shareScreen()));
      view.append(w.h("div", { class: "lc-call-bar" }, timer, toggle("lc-minor lc-mute", T.mute, T.unmute, "audio"),
        toggle("lc-minor lc-cam", T.camoff, T.camon, "video"), share,
        w.btn(T.hangup, "lc-hangup", () => w.act({ type: "end_video" }, null))));
      c.shareBtn = share;
      w.panel.insertBefore(view, w.banner);
      const began = Date.now();
      c.tick = setInterval(() => (timer.textContent = clock((Date.now() - began) / 1000)), 1000);
      // Unknown policy (the lookup failed): relay only, so no address leaves this browser.
      let ice = { ice_transport_policy: "relay" };
      try { ice = await w.call("GET", "webrtc"); } catch (e) { /* the call will not connect */ }
      if (rtc !== c) return;
      const pc = (c.pc = new RTCPeerConnection({ iceServers: ice.ice_servers || [], iceTransportPolicy: ice.ice_transport_policy || "all" }));
      pc.onicecandidate = (e) => e.candidate && w.sendSignal({ candidate: e.candidate.toJSON() });
      pc.ontrack = (e) => {
        if (!remote.srcObject) remote.srcObject = new MediaStream();
        remote.srcObject.addTrack(e.track);
      };
      pc.onconnectionstatechange = () => {
        view.dataset.state = pc.connectionState;
        if (pc.connectionState === "connected") state.textContent = "";
      };
      try {
        c.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: w.camera() });
      } catch (e) {
        c.stream = new MediaStream();
      }
      local.srcObject = c.stream;
      c.cam = c.stream.getVideoTracks()[0] || null;
      for (const s of c.pending.splice(0)) await onSignal(s);
    }
    function tellState() {
      const on = (kind) => !!(rtc && rtc.stream && rtc.stream.getTracks().some((t) => t.kind === kind && t.enabled));
      w.sendSignal({ state: { muted: !on("audio"), camera: on("video") || !!(rtc && rtc.screen) } });
    }
    const videoSender = () => rtc.pc.getTransceivers().find((t) => t.receiver.track.kind === "video");
    async function shareScreen() {
      try {
        const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
        rtc.screen = s.getVideoTracks()[0];
        rtc.screen.onended = unshare;
        await videoSender().sender.replaceTrack(rtc.screen);
        rtc.shareBtn.textContent = T.unshare;
        tellState();
      } catch (e) { /* the visitor cancelled */ }
    }
    async function unshare() {
      if (!rtc || !rtc.screen) return;
      rtc.screen.stop();
      rtc.screen = null;
      await videoSender().sender.replaceTrack(rtc.cam);
      rtc.shareBtn.textContent = T.share;
      tellState();
    }
    // The agent's offer, its ICE candidates, and whether the agent is muted or has the
    // camera off. Before the call is set up, they wait.
    async function onSignal(s) {
      const c = rtc;
      if (!c.pc || !c.stream) return c.pending.push(s);
      try {
        if (s.sdp && s.sdp.type === "offer") {
          await c.pc.setRemoteDescription(s.sdp);
          // Every line sends, with no track yet where the visitor has none: the screen
          // can take the video line later without a new offer.
          for (const t of c.pc.getTransceivers()) {
            t.direction = "sendrecv";
            const track = c.stream.getTracks().find((x) => x.kind === t.receiver.track.kind);
            if (track) await t.sender.replaceTrack(track), t.sender.setStreams && t.sender.setStreams(c.stream);
          }
          await c.pc.setLocalDescription(await c.pc.createAnswer());
          w.sendSignal({ sdp: c.pc.localDescription.toJSON() });
          tellState();
        } else if (s.candidate) {
          await c.pc.addIceCandidate(s.candidate);
        } else if (s.state) {
          c.view.classList.toggle("lc-peer-muted", !!s.state.muted);
          c.view.classList.toggle("lc-peer-nocam", !s.state.camera);
          c.state.textContent = [s.state.muted && T.muted, !s.state.camera && T.nocam].filter(Boolean).join(" · ");
        }
      } catch (e) { /* a stale or broken signal: the call goes on or ends by hang-up */ }
    }
    function endCall(d) {
      if (rtc) {
        clearInterval(rtc.tick);
        if (rtc.stream) rtc.stream.getTracks().forEach((t) => t.stop());
        if (rtc.screen) rtc.screen.stop();
        if (rtc.pc) rtc.pc.close();
        rtc.view.remove();
        rtc = null;
      }
      if (w.prompt() && w.prompt().classList.contains("lc-offer")) w.setPrompt(null);
      if (d.reason !== "declined") w.note(T.callended + " (" + clock(d.duration_secs || 0) + ")");
    }
    const clock = (secs) => Math.floor(secs / 60) + ":" + String(Math.floor(secs % 60)).padStart(2, "0");
    return { offer: () => !rtc && offerCall(), start: startCall, signal: (s) => rtc && onSignal(s), end: endCall };
  };
})();
