/* livechat visitor widget: plain JavaScript, no build step, no dependencies.
 * Embed: <script src="https://chat.example/widget.js" data-bot="support" async></script>
 * Full page (/chat/{bot}): data-mode="page", mounted into #livechat-page.
 * It talks only to the server it came from (docs/api.md), lives in a shadow root, and puts
 * every text it gets into the page with textContent, never as HTML. */
(() => {
  "use strict";
  const me = document.currentScript ||
    [...document.querySelectorAll("script[data-bot]")].reverse().find((s) => /\/widget\.js([?#]|$)/.test(s.src));
  if (!me || !me.src) return;
  const BOT = me.getAttribute("data-bot"), PAGE = me.getAttribute("data-mode") === "page";
  const ORIGIN = new URL(me.src, location.href).origin, API = ORIGIN + "/api/v1/visitor/";
  const KEY = "livechat:" + ORIGIN + ":" + BOT;
  const loaded = (window.__livechat = window.__livechat || {});
  if (!BOT || loaded[BOT]) return;
  loaded[BOT] = 1;

  // The widget's texts, by name, in every language it speaks.
  const STR = {
    en: {
      send: "Send",
      end: "End chat",
      close: "Close chat",
      msg: "Write a message…",
      answer: "Type your answer…",
      name: "Your name",
      email: "Your email",
      skip: "Skip",
      back: "Back",
      person: "Talk to a person",
      queue: "Connecting you to a person…",
      place: "You're number {} in line…",
      conn: "Reconnecting…",
      ended: "This chat has ended.",
      again: "Start a new chat",
      resolved: "This chat was marked as resolved. Write again any time.",
      sending: "Sending…",
      retry: "Not sent yet, retrying…",
      failed: "Not sent: ",
      typing: "{} is typing…",
      someone: "Someone",
      error: "Something went wrong. Please try again.",
      rate: "How was this chat?",
      good: "Good",
      bad: "Bad",
      thanks: "Thanks for your feedback!",
      unavailable: "This chat can't start on this page.",
      contact: "Write to us instead",
      video: "Video call",
      attach: "Attach a file",
      cancel: "Cancel",
    },
    de: {
      send: "Senden",
      end: "Chat beenden",
      close: "Chat schließen",
      msg: "Nachricht schreiben…",
      answer: "Ihre Antwort…",
      name: "Ihr Name",
      email: "Ihre E-Mail",
      skip: "Überspringen",
      back: "Zurück",
      person: "Mit einer Person sprechen",
      queue: "Wir verbinden Sie mit einer Person…",
      place: "Sie sind Nummer {} in der Warteschlange…",
      conn: "Verbindung wird wiederhergestellt…",
      ended: "Dieser Chat ist beendet.",
      again: "Neuen Chat beginnen",
      resolved: "Dieser Chat wurde als erledigt markiert. Schreiben Sie uns jederzeit wieder.",
      sending: "Wird gesendet…",
      retry: "Noch nicht gesendet, neuer Versuch…",
      failed: "Nicht gesendet: ",
      typing: "{} schreibt…",
      someone: "Jemand",
      error: "Etwas ist schiefgegangen. Bitte versuchen Sie es erneut.",
      rate: "Wie war dieser Chat?",
      good: "Gut",
      bad: "Schlecht",
      thanks: "Danke für Ihr Feedback!",
      unavailable: "Dieser Chat kann auf dieser Seite nicht starten.",
      contact: "Schreiben Sie uns stattdessen",
      video: "Videoanruf",
      attach: "Datei anhängen",
      cancel: "Abbrechen",
    },
    es: {
      send: "Enviar",
      end: "Terminar chat",
      close: "Cerrar chat",
      msg: "Escribe un mensaje…",
      answer: "Tu respuesta…",
      name: "Tu nombre",
      email: "Tu correo electrónico",
      skip: "Omitir",
      back: "Atrás",
      person: "Hablar con una persona",
      queue: "Te estamos conectando con una persona…",
      place: "Eres el número {} en la cola…",
      conn: "Reconectando…",
      ended: "Este chat ha terminado.",
      again: "Iniciar un chat nuevo",
      resolved: "Este chat se marcó como resuelto. Escríbenos cuando quieras.",
      sending: "Enviando…",
      retry: "Aún no enviado, reintentando…",
      failed: "No enviado: ",
      typing: "{} está escribiendo…",
      someone: "Alguien",
      error: "Algo salió mal. Inténtalo de nuevo.",
      rate: "¿Qué tal ha ido este chat?",
      good: "Bien",
      bad: "Mal",
      thanks: "¡Gracias por tu opinión!",
      unavailable: "Este chat no puede iniciarse en esta página.",
      contact: "Escríbanos en su lugar",
      video: "Videollamada",
      attach: "Adjuntar un archivo",
      cancel: "Cancelar",
    },
    fr: {
      send: "Envoyer",
      end: "Terminer le chat",
      close: "Fermer le chat",
      msg: "Écrire un message…",
      answer: "Votre réponse…",
      name: "Votre nom",
      email: "Votre e-mail",
      skip: "Passer",
      back: "Retour",
      person: "Parler à une personne",
      queue: "Mise en relation avec une personne…",
      place: "Vous êtes numéro {} dans la file…",
      conn: "Reconnexion…",
      ended: "Ce chat est terminé.",
      again: "Commencer un nouveau chat",
      resolved: "Ce chat a été marqué comme résolu. Écrivez-nous quand vous voulez.",
      sending: "Envoi…",
      retry: "Pas encore envoyé, nouvel essai…",
      failed: "Non envoyé : ",
      typing: "{} écrit…",
      someone: "Quelqu'un",
      error: "Une erreur s'est produite. Veuillez réessayer.",
      rate: "Comment s'est passé ce chat ?",
      good: "Bien",
      bad: "Mal",
      thanks: "Merci pour votre avis !",
      unavailable: "Ce chat ne peut pas démarrer sur cette page.",
      contact: "Écrivez-nous plutôt",
      video: "Appel vidéo",
      attach: "Joindre un fichier",
      cancel: "Annuler",
    },
    it: {
      send: "Invia",
      end: "Termina la chat",
      close: "Chiudi la chat",
      msg: "Scrivi un messaggio…",
      answer: "La tua risposta…",
      name: "Il tuo nome",
      email: "La tua email",
      skip: "Salta",
      back: "Indietro",
      person: "Parla con una persona",
      queue: "Ti stiamo mettendo in contatto con una persona…",
      place: "Sei il numero {} in coda…",
      conn: "Riconnessione…",
      ended: "Questa chat è terminata.",
      again: "Inizia una nuova chat",
      resolved: "Questa chat è stata segnata come risolta. Scrivici quando vuoi.",
      sending: "Invio…",
      retry: "Non ancora inviato, nuovo tentativo…",
      failed: "Non inviato: ",
      typing: "{} sta scrivendo…",
      someone: "Qualcuno",
      error: "Qualcosa è andato storto. Riprova.",
      rate: "Com'è andata questa chat?",
      good: "Bene",
      bad: "Male",
      thanks: "Grazie per il tuo feedback!",
      unavailable: "Questa chat non può iniziare su questa pagina.",
      contact: "Scriveteci invece",
      video: "Videochiamata",
      attach: "Allega un file",
      cancel: "Annulla",
    },
    nl: {
      send: "Verzenden",
      end: "Chat beëindigen",
      close: "Chat sluiten",
      msg: "Schrijf een bericht…",
      answer: "Uw antwoord…",
      name: "Uw naam",
      email: "Uw e-mailadres",
      skip: "Overslaan",
      back: "Terug",
      person: "Met een medewerker praten",
      queue: "We verbinden u met een medewerker…",
      place: "U bent nummer {} in de wachtrij…",
      conn: "Opnieuw verbinden…",
      ended: "Deze chat is beëindigd.",
      again: "Nieuwe chat starten",
      resolved: "Deze chat is als opgelost gemarkeerd. Schrijf ons gerust opnieuw.",
      sending: "Wordt verzonden…",
      retry: "Nog niet verzonden, opnieuw proberen…",
      failed: "Niet verzonden: ",
      typing: "{} typt…",
      someone: "Iemand",
      error: "Er is iets misgegaan. Probeer het opnieuw.",
      rate: "Hoe was deze chat?",
      good: "Goed",
      bad: "Slecht",
      thanks: "Bedankt voor uw feedback!",
      unavailable: "Deze chat kan op deze pagina niet starten.",
      contact: "Schrijf ons liever",
      video: "Videogesprek",
      attach: "Bestand bijvoegen",
      cancel: "Annuleren",
    },
    pt: {
      send: "Enviar",
      end: "Encerrar conversa",
      close: "Fechar conversa",
      msg: "Escreva uma mensagem…",
      answer: "Sua resposta…",
      name: "Seu nome",
      email: "Seu e-mail",
      skip: "Pular",
      back: "Voltar",
      person: "Falar com uma pessoa",
      queue: "Conectando você a uma pessoa…",
      place: "Você é o número {} na fila…",
      conn: "Reconectando…",
      ended: "Esta conversa foi encerrada.",
      again: "Iniciar nova conversa",
      resolved: "Esta conversa foi marcada como resolvida. Escreva quando quiser.",
      sending: "Enviando…",
      retry: "Ainda não enviada, tentando de novo…",
      failed: "Não enviada: ",
      typing: "{} está digitando…",
      someone: "Alguém",
      error: "Algo deu errado. Tente novamente.",
      rate: "Como foi esta conversa?",
      good: "Boa",
      bad: "Ruim",
      thanks: "Obrigado pelo seu feedback!",
      unavailable: "Esta conversa não pode começar nesta página.",
      contact: "Escreva-nos em vez disso",
      video: "Videochamada",
      attach: "Anexar um arquivo",
      cancel: "Cancelar",
    },
  };
  let L;
  const lang = (code) => {
    const t = STR[String(code || "en").split("-")[0]] || STR.en;
    L = Object.assign({}, STR.en, t);
  };
  lang("en");

  const keep = (area, key, value) => {
    try { // storage may be blocked; the chat then works, unremembered
      const s = window[area];
      if (value === undefined) return s.getItem(key);
      value === null ? s.removeItem(key) : s.setItem(key, value);
    } catch (e) { return null; }
  };
  // An element; string children become text nodes, never markup.
  const h = (tag, props, ...kids) => {
    const e = document.createElement(tag);
    for (const k in props || {}) {
      const v = props[k];
      if (v == null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    e.append(...kids.filter(Boolean));
    return e;
  };
  const btn = (label, cls, onclick) => h("button", { type: "button", class: "lc-btn " + cls, text: label, onclick });
  const safeUrl = (u) => {
    if (!u) return null;
    try {
      const url = new URL(u, ORIGIN);
      return /^https?:$/.test(url.protocol) ? url.href : null;
    } catch (e) { return null; }
  };
  const cut = (s) => (s ? s.slice(0, 2000) : undefined);
  const uuid = () => crypto.randomUUID ? crypto.randomUUID()
    : [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const inputType = (t) => ({ email: "email", phone: "tel" })[t] || "text";
  // Dark text on light brand colours, white on dark ones.
  const onColor = (c) => {
    let x = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(c)[1];
    if (x.length === 3) x = x.replace(/./g, "$&$&");
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(x.slice(i, i + 2), 16));
    return 0.299 * r + 0.587 * g + 0.114 * b > 160 ? "#111" : "#fff";
  };
  // Web addresses in a message become links: text nodes and <a>, never markup.
  const linkify = (el, text) => {
    let at = 0;
    for (const m of text.matchAll(/https?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]]/g)) {
      el.append(text.slice(at, m.index), h("a", { href: m[0], target: "_blank", rel: "noopener noreferrer", text: m[0] }));
      at = m.index + m[0].length;
    }
    el.append(text.slice(at));
    return el;
  };

  // -- the DOM, in a shadow root
  // A tag of our own: the page's rules for div and such miss it.
  const host = h("livechat-widget", { "data-livechat": BOT, "data-mode": PAGE ? "page" : "embed" });
  const root = host.attachShadow({ mode: "open" });
  const wrap = h("div", { class: "lc " + (PAGE ? "lc-page" : "lc-embed"), hidden: true });
  const css = h("link", { rel: "stylesheet", href: ORIGIN + "/widget.css" });
  let waits = PAGE ? 1 : 2; // the styles, and the session (for the launcher)
  const reveal = () => --waits || (wrap.hidden = false);
  css.onload = css.onerror = reveal;
  const launchText = h("span");
  const launcher = h("button", { type: "button", class: "lc-launcher", "aria-expanded": "false",
    "aria-controls": "lc-panel", onclick: () => toggle(true) }, h("span", { class: "lc-icon" }), launchText);
  const avatar = h("img", { class: "lc-avatar", alt: "", hidden: true });
  const title = h("div", { class: "lc-title" }), sub = h("div", { class: "lc-sub" });
  const endBtn = h("button", { type: "button", class: "lc-end", onclick: () => act({ type: "end" }, null) });
  const closeBtn = PAGE ? null : h("button", { type: "button", class: "lc-close", onclick: () => toggle(false) }, "×");
  const banner = h("div", { class: "lc-banner", role: "status", hidden: true });
  const log = h("div", { class: "lc-log", role: "log", "aria-live": "polite", tabindex: "0" });
  const typing = h("div", { class: "lc-typing", "aria-live": "polite" });
  const input = h("input", { class: "lc-input" });
  const sendBtn = h("button", { type: "submit", class: "lc-send" });
  const fileIn = h("input", { type: "file", multiple: true, hidden: true,
    onchange: () => { sendFiles([...fileIn.files]); fileIn.value = ""; } });
  const attachBtn = h("button", { type: "button", class: "lc-attach", text: "+", onclick: () => fileIn.click() });
  const panel = h("div", { class: "lc-panel", id: "lc-panel", role: "dialog", hidden: !PAGE },
    h("div", { class: "lc-head" }, avatar, h("div", { class: "lc-heads" }, title, sub), endBtn, closeBtn),
    banner, log, typing, h("form", { class: "lc-compose", onsubmit: send }, attachBtn, fileIn, input, sendBtn));
  wrap.append(...(PAGE ? [panel] : [launcher, panel]));
  root.append(css, wrap);
  panel.addEventListener("keydown", (e) => e.key === "Escape" && toggle(false));

  // -- state
  let token = keep("localStorage", KEY), widget = {};
  let conv = null, convSeq = 0; // the conversation shown, the last seq of its events
  let lastSeq = 0; // the socket and polling ask for the events after it
  let seen = new Set(), pending = []; // message ids drawn; own messages unconfirmed
  let promptEl = null; // the current step's controls, kept last in the log
  let ended = false, agentName = null, queued = false, place = 0, connBad = false, polledAt = 0;
  let hadAgent = false, rated = false; // a person had this chat; the visitor rated it
  let resolved = false; // resolved by the agent: over until the visitor writes again
  let liveLabel = null; // the Live Chat button shown, echoed once the request is made
  let isOpen = PAGE, booted = false, connTimer, typingTimer;
  let invite = null; // an agent's invitation shown, until the visitor answers it

  function toggle(on) {
    if (PAGE) return;
    // A page view starts no conversation: it starts on first open (or on the answer to
    // an invitation).
    if (on && !conv && !invite) start();
    isOpen = on;
    panel.hidden = !on;
    wrap.classList.toggle("lc-open", on);
    launcher.setAttribute("aria-expanded", on);
    keep("sessionStorage", KEY + ":open", on ? "1" : null);
    if (!on) return launcher.focus();
    launcher.classList.remove("lc-unread");
    scrollDown();
    (input.disabled ? log : input).focus();
  }

  function applyWidget(w) {
    widget = w;
    lang(w.language);
    const color = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(w.color) ? w.color : "#0b6efd";
    wrap.style.setProperty("--lc-color", color);
    wrap.style.setProperty("--lc-on", onColor(color));
    wrap.classList.toggle("lc-left", w.position === "left");
    launchText.textContent = w.launcher || w.title || "Chat";
    title.textContent = w.title || "";
    panel.setAttribute("aria-label", w.title || "Chat");
    const src = safeUrl(w.avatar_url);
    avatar.hidden = !src;
    if (src) avatar.src = src;
    endBtn.textContent = L.end;
    sendBtn.textContent = L.send;
    attachBtn.hidden = w.attachments === false; // the bot takes no files
    attachBtn.setAttribute("aria-label", L.attach);
    attachBtn.title = L.attach;
    if (closeBtn) closeBtn.setAttribute("aria-label", L.close);
    input.setAttribute("aria-label", L.msg);
    status();
  }

  // The header, the banner and the controls follow the state.
  function status() {
    sub.textContent = (!resolved && agentName) || widget.subtitle || "";
    banner.textContent = connBad ? L.conn : queued ? (place > 0 ? L.place.replace("{}", place) : L.queue) : "";
    banner.hidden = !banner.textContent;
    endBtn.hidden = ended || resolved;
    input.disabled = sendBtn.disabled = attachBtn.disabled = ended;
  }
  function setConn(ok) {
    clearTimeout(connTimer);
    if (ok) connBad = false;
    // A banner only when it lasts, and not while polling works.
    else connTimer = setTimeout(() => (connBad = Date.now() - polledAt > 7000) && status(), 3000);
    status();
  }
  const queue = (on) => {
    queued = on;
    place = 0;
    status();
    if (on) checkQueue(); // its frame may come before the hand-off
  };
  const checkQueue = () => call("GET", "queue").then((r) => queued && ((place = r.position), status()), () => 0);

  const scrollDown = () => (log.scrollTop = log.scrollHeight);
  function add(el) {
    log.insertBefore(el, promptEl);
    scrollDown();
  }
  const note = (text) => add(h("div", { class: "lc-note", text }));
  function setPrompt(box) {
    if (promptEl) promptEl.remove();
    promptEl = box;
    if (box) log.append(box), scrollDown();
    setInput(null);
  }

  // The input answers the bot's ask: type, autocomplete and length follow it.
  function setInput(a) {
    const t = a ? a.type : "text", f = a && a.field;
    input.type = inputType(t);
    input.inputMode = t === "number" ? "numeric" : t === "phone" ? "tel" : "text";
    input.autocomplete = f === "name" ? "name" : t === "email" ? "email" : t === "phone" ? "tel" : "off";
    input.maxLength = (a && a.max) || 10000;
    input.placeholder = !a ? L.msg : f === "name" ? L.name : f === "email" ? L.email : L.answer;
  }

  function bubble(author, text, name, at) {
    const kind = ["bot", "visitor", "agent"].includes(author) ? author : "system";
    return h("div", { class: "lc-msg lc-" + kind, title: at && new Date(at).toLocaleString() },
      name && h("div", { class: "lc-name", text: name }), linkify(h("div", { class: "lc-text" }), String(text || "")));
  }

  function reset(id) {
    log.textContent = "";
    [promptEl, conv, convSeq, seen, pending, ended, agentName, queued] = [null, id, 0, new Set(), [], false, null, false];
    [hadAgent, rated, resolved, liveLabel] = [false, false, false, null];
    hideTyping();
    setInput(null);
    status();
  }

  // -- events
  function apply(ev, live) {
    if (ev.seq != null) {
      if (ev.seq <= lastSeq) return; // seen already (replayed, or polled too)
      lastSeq = ev.seq;
    }
    const d = ev.data || {};
    if (ev.type === "invite") return invited(d);
    // A conversation started after this one's events (in another tab, say) replaces it.
    if (ev.type === "conversation.started" && ev.conversation_id !== conv && convSeq && ev.seq > convSeq) reset(ev.conversation_id);
    if (ev.conversation_id !== conv) return; // an earlier conversation of this visitor
    if (ev.seq) convSeq = ev.seq;
    switch (ev.type) {
      case "message.created": return message(d, ev.at, live);
      case "flow.step": return step(d);
      case "livechat.requested": case "form.submitted": return setPrompt(null);
      case "livechat.accepted": case "livechat.timeout": case "livechat.offline": return queue(false);
      case "queue.position":
        place = d.position || 0;
        return status();
      case "conversation.reopened":
        resolved = false;
        return status();
      case "conversation.assigned":
        resolved = false;
        agentName = d.name || null;
        if (agentName) hadAgent = true;
        if (agentName) setPrompt(null); // the bot pauses while a person chats
        return queue(!agentName); // unassigned: it rings again
      case "conversation.resolved":
        // Nobody is chatting any more: no agent in the header, nothing to end.
        resolved = true;
        agentName = null;
        queue(false);
        note(L.resolved);
        return askRating();
      case "conversation.ended": case "conversation.closed":
        ended = true;
        queue(false);
        hideTyping();
        note(L.ended);
        if (ev.type === "conversation.ended") askRating();
        return setPrompt(h("div", { class: "lc-prompt" }, btn(L.again, "lc-primary lc-again", () => start())));
      case "video.requested":
        // The visitor's own request comes before any agent: with one, it is their offer.
        return agentName && withCall((c) => c.offer());
      case "video.started":
        setPrompt(null);
        return live && withCall((c) => c.start());
      case "video.ended":
        return withCall((c) => c.end(d));
      case "signal":
        return d.from === "agent" && withCall((c) => c.signal(d.signal || {}));
      case "conversation.rated":
        rated = true;
        log.querySelectorAll(".lc-rate").forEach((e) => e.remove());
        return note(L.thanks);
      case "typing":
        if (d.from === "agent") {
          typing.textContent = L.typing.replace("{}", d.name || L.someone);
          clearTimeout(typingTimer);
          typingTimer = setTimeout(hideTyping, 5000);
        }
    }
  }
  // An agent's invitation: the panel opens with it; the reply starts the chat, theirs.
  function invited(d) {
    if (conv || !d.text) return;
    invite = d;
    log.textContent = "";
    promptEl = null;
    add(bubble("agent", d.text, d.name || L.someone));
    toggle(true);
  }
  // -- video calls: the code is in /widget-call.js, loaded the first time a call is
  // offered or starts, so that page views without one do not carry it.
  let callMod = null, callLoading = null, camera = true;
  const sendSignal = (data) => ws && wsReady && ws.send(JSON.stringify({ type: "signal", data }));
  function withCall(use) {
    if (!callLoading) {
      callLoading = new Promise((ok, fail) => {
        const s = document.createElement("script");
        Object.assign(s, { src: ORIGIN + "/widget-call.js", async: true, onload: ok, onerror: fail });
        document.head.append(s);
      }).then(() => (callMod = window.__livechatCall({ h, btn, act, call, sendSignal, panel, banner, note,
        setPrompt, prompt: () => promptEl, lang: () => widget.language, agent: () => agentName || L.someone,
        camera: (on) => (on === undefined ? camera : (camera = on)) })));
    }
    return callLoading.then(() => use(callMod), () => note(L.error));
  }

  // Once a chat a person had is over: good or bad, once. The answer comes back as the
  // `conversation.rated` event, which replaces the question with thanks.
  function askRating() {
    if (!hadAgent || rated || log.querySelector(".lc-rate")) return;
    const box = h("div", { class: "lc-rate", role: "group", "aria-label": L.rate },
      h("div", { class: "lc-note", text: L.rate }));
    const choice = (rating, label) => btn(label, "lc-rate-" + rating, () => act({ type: "rate", rating }, box));
    box.append(h("div", { class: "lc-prompt" }, choice("good", L.good), choice("bad", L.bad)));
    add(box);
  }
  function hideTyping() {
    clearTimeout(typingTimer);
    typing.textContent = "";
  }

  function message(d, at, live) {
    const id = d.message_id;
    if (id && seen.has(id)) return;
    const mine = d.author === "visitor" && pending.find((p) => p.text === d.text);
    if (mine) return settle(mine, id);
    if (id) seen.add(id);
    if (d.notice === "handoff") queue(true);
    // The request for a person begins with the welcome notice: the Live Chat button that
    // made it is echoed first, as a choice clicked is (the server echoes those).
    if (d.notice === "welcome" && liveLabel) add(bubble("visitor", liveLabel)), liveLabel = null;
    if (d.author === "agent") {
      hideTyping();
      // Back after a reopen: the agent who writes is the one chatting.
      if (!resolved && d.name && !agentName) (agentName = d.name), status();
    }
    const b = bubble(d.author, d.text, d.author === "agent" && (d.name || L.someone), at);
    const files = filesEl(d.attachments);
    if (files) b.append(files);
    add(b);
    if (live && !isOpen && d.author !== "visitor") launcher.classList.add("lc-unread");
  }

  function step(d) {
    setPrompt(null);
    liveLabel = d.live_chat ? d.live_chat.label || L.person : null;
    const url = d.link && safeUrl(d.link.url);
    // In the history: a step that only links does not wait, the next step follows.
    if (url) add(h("div", { class: "lc-links" }, h("a", { class: "lc-btn lc-link", href: url, target: "_blank",
      rel: "noopener noreferrer", text: d.link.label || url })));
    if (d.end) return;
    const box = h("div", { class: "lc-prompt" }), lc = d.live_chat;
    (d.choices || []).forEach((c, index) =>
      box.append(btn(c.label, "lc-choice", () => act({ type: "choice", step: d.step || undefined, index }))));
    if (lc && (!(lc.modes || []).length || lc.modes.includes("text")))
      box.append(btn(lc.label || L.person, "lc-live lc-" + (lc.style === "secondary" ? "secondary" : "primary"),
        () => act({ type: "request_live_chat", action: lc.action || undefined })));
    if (lc && (lc.modes || []).includes("video"))
      box.append(btn(L.video, "lc-live lc-video lc-" + (lc.style === "secondary" ? "secondary" : "primary"),
        () => ((liveLabel = L.video), (camera = true), act({ type: "request_video", action: lc.action || undefined }))));
    if (d.offline_form) box.append(offlineForm(d.offline_form));
    for (const b of d.buttons || []) if (L[b] && /^(skip|back)$/.test(b)) box.append(btn(L[b], "lc-minor", () => act({ type: b })));
    setPrompt(box.firstChild ? box : null);
    setInput(d.ask || d.collect || null);
  }

  // -- HTTP
  async function call(method, path, body, anonymous) {
    const headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (token && !anonymous) headers.Authorization = "Bearer " + token;
    const res = await fetch(API + path, { method, headers, body: body && JSON.stringify(body),
      mode: "cors", credentials: "omit", cache: "no-store" });
    const data = await res.json().catch(() => null);
    if (res.ok) return data;
    const e = (data && data.error) || {};
    const err = Object.assign(new Error(e.message || L.error),
      { status: res.status, code: e.code, fields: e.fields, contact: e.contact_url });
    if (e.code === "invalid_token" && !anonymous) start(true); // the server forgot us
    throw err;
  }
  const transient = (e) => !e.status || e.status >= 500 || e.status === 429;
  const caughtUp = () => wsReady || poll();

  // A button's action: the step's buttons wait; the events that follow replace them.
  async function act(body, box = promptEl) {
    const busy = (on) => box && box.querySelectorAll("button").forEach((b) => (b.disabled = on));
    busy(true);
    try {
      await call("POST", "actions", body);
      caughtUp();
    } catch (e) {
      busy(false);
      if (!box) return note(e.message);
      const old = box.querySelector(".lc-act");
      if (old) old.remove();
      box.append(h("div", { class: "lc-err lc-act", role: "alert", text: e.message }));
    }
  }

  function offlineForm(f) {
    const form = h("form", { class: "lc-form" }, h("div", { class: "lc-form-title", text: f.title }),
      f.intro && h("p", { text: f.intro }));
    const fields = {};
    for (const fd of f.fields || []) {
      const id = "lc-" + uuid(), t = fd.type;
      const el = t === "textarea" ? h("textarea", { rows: 3 })
        : t === "select" ? h("select", {}, h("option", { value: "", text: "—" }), ...(fd.options || []).map((o) => h("option", { text: o })))
        : h("input", { type: inputType(t), autocomplete: t === "email" ? "email" : t === "phone" ? "tel" : fd.name === "name" ? "name" : "off" });
      const err = h("div", { class: "lc-err", id: id + "e" });
      Object.assign(el, { id, name: fd.name, required: !!fd.required });
      if (fd.max && t !== "select") el.maxLength = fd.max;
      el.setAttribute("aria-describedby", err.id);
      form.append(h("label", { for: id, text: fd.label + (fd.required ? " *" : "") }), el, err);
      fields[fd.name] = { el, err, label: fd.label };
    }
    const general = h("div", { class: "lc-err", role: "alert" });
    const submit = h("button", { type: "submit", class: "lc-btn lc-primary", text: L.send });
    form.append(general, submit);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const values = {};
      general.textContent = "";
      for (const [name, { el, err }] of Object.entries(fields)) {
        err.textContent = "";
        el.removeAttribute("aria-invalid");
        if (el.value.trim()) values[name] = el.value.trim();
      }
      submit.disabled = true;
      try {
        await call("POST", "actions", { type: "form", form: f.id, values });
        caughtUp();
      } catch (err) {
        submit.disabled = false;
        // Each problem under its field: from `fields` or from "<field> <problem>; …".
        const problems = err.fields || (err.status === 400 ? err.message.split("; ").map((p) =>
          ({ field: p.split(" ")[0], message: p.slice(p.indexOf(" ") + 1) })) : []);
        const rest = [];
        for (const p of problems) {
          const fd = fields[p.field];
          if (!fd) rest.push(p.field + " " + p.message);
          else fd.err.textContent = fd.label + " " + p.message, fd.el.setAttribute("aria-invalid", "true");
        }
        general.textContent = problems.length ? rest.join("; ") : err.message;
        const bad = form.querySelector("[aria-invalid]");
        if (bad) bad.focus();
      }
    });
    return form;
  }

  // -- sending
  async function send(e) {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || ended || !token) return;
    if (invite && !conv) {
      invite = null;
      await start();
      if (!conv) return;
    }
    input.value = "";
    setInput(null); // the ask is answered; what follows is chat
    const state = h("div", { class: "lc-state", text: L.sending });
    const m = { cid: uuid(), text, state, el: bubble("visitor", text) };
    m.el.classList.add("lc-pending");
    m.el.append(state);
    pending.push(m);
    add(m.el);
    post(m, 1000);
  }
  // On the open socket when it can (acked after the commit), else by HTTP. Retries reuse
  // the client_id: the server stores the message once.
  const acks = new Map();
  function viaSocket(b) {
    const f = JSON.stringify({ type: "message", ...b });
    // Frames are capped at 16 KiB: long texts go by HTTP.
    if (!wsReady || f.length > 5000) return null;
    return new Promise((ok, no) => {
      const done = (a) => {
        clearTimeout(t), acks.delete(b.client_id);
        a.message_id ? ok(a) : no(Object.assign(new Error((a.error && a.error.message) || L.error), { status: a.status }));
      };
      const t = setTimeout(done, 5000, {});
      acks.set(b.client_id, done);
      ws.send(f);
    });
  }
  async function post(m, delay) {
    const tok = token;
    try {
      const b = { client_id: m.cid, text: m.text };
      // After a failure on the socket (no ack, or it closed), retries go by HTTP.
      const r = await ((!m.h && viaSocket(b)) || call("POST", "messages", b));
      if (tok === token) settle(m, r.message_id), caughtUp();
    } catch (e) {
      if (tok !== token || m.done) return;
      if (transient(e)) {
        m.h = 1;
        m.state.textContent = L.retry;
        return setTimeout(() => post(m, Math.min(delay * 2, 30000)), delay);
      }
      m.done = true;
      pending = pending.filter((p) => p !== m);
      m.el.classList.replace("lc-pending", "lc-failed");
      m.state.textContent = L.failed + e.message;
    }
  }
  function settle(m, id) {
    if (m.done) return;
    m.done = true;
    pending = pending.filter((p) => p !== m);
    if (seen.has(id)) return m.el.remove(); // its event drew it already
    seen.add(id);
    m.el.classList.remove("lc-pending");
    m.state.remove();
  }
  // -- files: each one uploaded with progress and a Cancel, then sent as a message of its own
  const sizeText = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + " MB" : n >= 1e3 ? Math.round(n / 1e3) + " KB" : (n || 0) + " B");
  // Pictures, players and downloads send no token: they load through a signed link.
  const link = (id) => call("GET", "attachments/" + encodeURIComponent(id) + "/link");
  const signed = (id) => link(id).then((r) => ORIGIN + r.url, () => null);
  function filesEl(list) {
    if (!Array.isArray(list) || !list.length) return null;
    const box = h("div", { class: "lc-files" });
    for (const a of list) {
      const type = String(a.type || ""), name = String(a.name || "file");
      if (type.startsWith("image/")) {
        // The server's preview inline (smaller, no metadata); a click opens the original.
        const img = h("img", { class: "lc-file-img", alt: name });
        const open = h("a", { target: "_blank", rel: "noopener noreferrer" }, img);
        link(a.id).then((r) => {
          img.src = ORIGIN + (r.preview_url || r.url);
          open.href = ORIGIN + r.url;
        }, () => null);
        box.append(open);
      } else if (type.startsWith("audio/") || type.startsWith("video/")) {
        const media = h(type.startsWith("audio/") ? "audio" : "video", { class: "lc-file-media", controls: true, preload: "metadata", title: name });
        signed(a.id).then((u) => u && (media.src = u));
        box.append(media);
      } else {
        box.append(h("a", { class: "lc-file", href: "#", text: name + " · " + sizeText(a.size),
          onclick: (e) => { e.preventDefault(); signed(a.id).then((u) => u && location.assign(u)); } }));
      }
    }
    return box;
  }
  function upload(file, m) {
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      m.abort = () => x.abort();
      x.open("POST", API + "attachments?name=" + encodeURIComponent(file.name || "file"));
      x.setRequestHeader("Authorization", "Bearer " + token);
      x.upload.onprogress = (e) => e.lengthComputable && (m.state.firstChild.textContent = L.sending + " " + Math.round(100 * e.loaded / e.total) + " %");
      x.onload = () => {
        let d = null;
        try { d = JSON.parse(x.responseText); } catch (e) { d = null; }
        if (x.status === 201 && d) resolve(d);
        else reject(new Error((d && d.error && d.error.message) || L.error));
      };
      x.onerror = () => reject(new Error(L.error));
      x.onabort = () => reject(new Error(L.cancel));
      x.send(file);
    });
  }
  async function sendFiles(files) {
    if (ended || !token) return;
    for (const file of files) {
      const m = { state: h("div", { class: "lc-state" }, h("span", { text: L.sending }), " ") };
      m.state.append(btn(L.cancel, "lc-minor lc-cancel", () => m.abort && m.abort()));
      m.el = bubble("visitor", file.name || "file");
      m.el.classList.add("lc-pending");
      m.el.append(m.state);
      add(m.el);
      try {
        const a = await upload(file, m);
        m.abort = null;
        const r = await call("POST", "messages", { client_id: uuid(), attachments: [a.id] });
        if (seen.has(r.message_id)) m.el.remove(); // its event drew it already
        else {
          seen.add(r.message_id);
          m.el.replaceWith(h("div", { class: "lc-msg lc-visitor" }, filesEl([a])));
        }
        caughtUp();
      } catch (e) {
        m.el.classList.replace("lc-pending", "lc-failed");
        m.state.textContent = L.failed + e.message;
      }
    }
  }
  const dropped = (e) => [...((e.clipboardData || e.dataTransfer || {}).files || [])];
  input.addEventListener("paste", (e) => {
    const files = dropped(e);
    if (files.length) e.preventDefault(), sendFiles(files);
  });
  panel.addEventListener("dragover", (e) => e.preventDefault());
  panel.addEventListener("drop", (e) => {
    const files = dropped(e);
    if (files.length) e.preventDefault(), sendFiles(files);
  });

  let typedAt = 0; // tell the agent, at most every 2 s
  input.addEventListener("input", () => {
    if (wsReady && input.value && Date.now() - typedAt >= 2000) {
      typedAt = Date.now();
      ws.send('{"type":"typing"}');
    }
  });

  // -- session, socket, polling
  let starting = false, startDelay = 1000;
  async function start(fresh) {
    if (starting) return;
    starting = true;
    if (fresh) token = null;
    let r;
    try {
      r = await call("POST", "sessions", { bot: BOT, token: token || undefined, page_url: cut(location.href),
        referrer: cut(document.referrer), language: navigator.language || undefined }, true);
    } catch (e) {
      starting = false;
      // An unknown bot, or a site the bot may not be on: say so, and stay away.
      if (!transient(e)) return console.warn("livechat: " + e.message), PAGE && refused(e);
      connBad = true;
      status();
      setTimeout(() => start(fresh), startDelay);
      return (startDelay = Math.min(startDelay * 2, 30000));
    }
    starting = false;
    startDelay = 1000;
    keep("localStorage", KEY, (token = r.token));
    // Its events hold the visitor's past too: draw the current conversation only.
    reset(r.conversation_id);
    lastSeq = 0;
    applyWidget(r.widget || {});
    (r.events || []).forEach((ev) => apply(ev, false));
    setConn(true);
    if (!booted) {
      booted = true;
      reveal();
      if (keep("sessionStorage", KEY + ":open")) toggle(true);
      else if (!PAGE && widget.auto_open_secs > 0 && !keep("sessionStorage", KEY + ":auto")) {
        keep("sessionStorage", KEY + ":auto", "1");
        setTimeout(() => isOpen || toggle(true), widget.auto_open_secs * 1000);
      }
    } else if (isOpen && !ended) input.focus();
    connect();
  }

  // The full page cannot chat (an unknown bot, or a site the bot may not be on): a plain
  // notice instead of a chat that looks broken, and the contact form when the bot has one.
  function refused(e) {
    lang(navigator.language);
    title.textContent = document.title;
    endBtn.hidden = true;
    panel.querySelector(".lc-compose").hidden = true;
    const link = safeUrl(e.contact);
    log.replaceChildren(h("div", { class: "lc-refused", role: "alert" },
      h("p", { class: "lc-refused-title", text: L.unavailable }), h("p", { text: e.message }),
      link && h("a", { class: "lc-btn lc-primary", href: link, text: L.contact })));
    if (!booted) booted = true, reveal();
  }

  let ws = null, wsReady = false, tries = 0, retryTimer;
  function connect() {
    clearTimeout(retryTimer);
    if (ws) ws.onclose = null, ws.close();
    ws = null;
    wsReady = false;
    const tok = token;
    let s;
    try {
      s = ws = new WebSocket(ORIGIN.replace(/^http/, "ws") + "/api/v1/visitor/events?after=" + lastSeq);
    } catch (e) { return lost(); }
    s.onopen = () => s.send(JSON.stringify({ type: "auth", token: tok }));
    s.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      if (tok !== token) return;
      if (f.type === "ready") {
        wsReady = true;
        tries = 0;
        stopPoll();
        setConn(true);
      } else if (f.type === "ack") (acks.get(f.client_id) || Boolean)(f);
      else if (f.type === "error") {
        // Forgotten (or erased by an admin): what was shown goes, a fresh session starts.
        const gone = f.error && (f.error.code === "invalid_token" || f.error.code === "visitor_erased");
        if (gone) s.onclose = ws = null, s.close(), start(true);
      } else apply(f, true);
    };
    s.onclose = () => ws === s && lost();
  }
  // Again after 1, 2, 4 … at most 30 s, from the last seq; after 3 failures, poll meanwhile.
  function lost() {
    acks.forEach((d) => d({}));
    ws = null;
    wsReady = false;
    setConn(false);
    if (++tries >= 3) startPoll();
    retryTimer = setTimeout(connect, Math.min(30000, 1000 * 2 ** (tries - 1)));
  }
  addEventListener("online", () => token && !wsReady && ((tries = 0), connect()));

  let pollTimer = null, polling = false;
  function startPoll() {
    if (!pollTimer) pollTimer = setInterval(poll, 3000), poll();
  }
  function stopPoll() {
    clearInterval(pollTimer);
    pollTimer = null;
  }
  async function poll() {
    if (polling || !token) return;
    polling = true;
    const tok = token;
    try {
      for (let more = true; more && tok === token;) {
        const r = await call("GET", "history?after=" + lastSeq);
        if (tok !== token) break;
        (r.events || []).forEach((ev) => apply(ev, true));
        more = r.more;
      }
      if (queued) checkQueue(); // the socket's queue frames are not there
      polledAt = Date.now();
      setConn(true);
    } catch (e) { /* the next round tries again */ }
    polling = false;
  }

  // Before any chat: the page view (the visitor keeps one token across pages), how the
  // launcher looks, and the socket an invitation comes on. An open chat resumes.
  async function pageview() {
    let r;
    try {
      r = await call("POST", "pageviews", { bot: BOT, url: cut(location.href), title: document.title.slice(0, 300),
        referrer: cut(document.referrer), language: navigator.language || undefined });
    } catch (e) {
      if (!transient(e)) return console.warn("livechat: " + e.message);
      return setTimeout(pageview, 5000);
    }
    keep("localStorage", KEY, (token = r.token));
    if (r.conversation_id) return start();
    applyWidget(r.widget || {});
    booted = true;
    reveal();
    if (keep("sessionStorage", KEY + ":open")) toggle(true);
    else if (widget.auto_open_secs > 0 && !keep("sessionStorage", KEY + ":auto")) {
      keep("sessionStorage", KEY + ":auto", "1");
      setTimeout(() => isOpen || toggle(true), widget.auto_open_secs * 1000);
    }
    lastSeq = r.last_seq || 0;
    connect();
    if (r.invite) invited(r.invite);
  }

  const mount = () => (document.getElementById(PAGE ? "livechat-page" : "-") || document.body).append(host);
  document.body ? mount() : addEventListener("DOMContentLoaded", mount);
  setInput(null);
  // The full page chats at once; a widget reports the page view first.
  PAGE ? start() : pageview();
})();
