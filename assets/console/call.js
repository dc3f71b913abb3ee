/* A video call with the visitor of a conversation I have: the console makes the WebRTC
 * offer once the call starts (`video.started`), the widget answers; offers, answers and
 * ICE candidates travel as `signal` frames over the event socket, which the server passes
 * only between the call's two sides. One call at a time; it lives above the messages. */

import { $, h, clear, button, toast } from './dom.js';
import { api, reason } from './api.js';
import { isMe } from './state.js';
import { sendFrame } from './stream.js';

let call = null; // { id, pc, stream, screen, cam, view, … } of the call under way

const clock = (secs) => Math.floor(secs / 60) + ':' + String(Math.floor(secs % 60)).padStart(2, '0');

/** Offers the visitor of `id` a call (they accept or decline in the widget). */
export async function offerCall(id) {
  try {
    await api('POST', '/conversations/' + encodeURIComponent(id) + '/video');
    toast('Video call offered: waiting for the visitor.');
  } catch (e) {
    toast(reason(e));
  }
}

/** The stream's `video.*` and `signal` frames. `live`: not a replay of old events. */
export function onCallFrame(f, live) {
  const data = f.data || {};
  const id = f.conversation_id;
  if (f.type === 'video.started' && live && isMe(data.agent) && !call) start(id);
  else if (f.type === 'video.ended' && call && call.id === id) stop(data);
  else if (f.type === 'signal' && call && call.id === id && data.from === 'visitor') onSignal(data.signal || {});
}

/** Whether a call is under way in `id`. */
export function inCall(id) {
  return !!call && call.id === id;
}

function signal(data) {
  if (call) sendFrame({ type: 'signal', conversation_id: call.id, data });
}

async function start(id) {
  const box = $('call');
  clear(box);
  const remote = h('video', { id: 'call-remote', class: 'call-remote', autoplay: true, playsinline: true });
  const local = h('video', { id: 'call-local', class: 'call-local', autoplay: true, playsinline: true });
  local.muted = true;
  const state = h('span', { id: 'call-state', class: 'call-state', role: 'status' }, 'Connecting…');
  const timer = h('span', { id: 'call-timer', class: 'call-timer' }, '0:00');
  const c = (call = { id, remote, local, state, pending: [], pc: null, stream: null, screen: null, cam: null });
  const toggle = (id, on, off, kind) => {
    const b = button(on, '', () => {
      const t = c.stream && c.stream.getTracks().find((x) => x.kind === kind);
      if (!t) return;
      t.enabled = !t.enabled;
      b.textContent = t.enabled ? on : off;
      b.setAttribute('aria-pressed', String(!t.enabled));
      tellState();
    });
    b.id = id;
    return b;
  };
  const share = button('Share screen', '', () => (c.screen ? unshare() : shareScreen()));
  share.id = 'call-share';
  c.shareBtn = share;
  const hangup = button('Hang up', 'danger', () =>
    api('POST', '/conversations/' + encodeURIComponent(id) + '/video/end').catch((e) => toast(reason(e))));
  hangup.id = 'call-hangup';
  box.append(h('div', { class: 'call-videos' }, remote, local),
    h('div', { class: 'call-bar' }, timer, state, toggle('call-mute', 'Mute', 'Unmute', 'audio'),
      toggle('call-camera', 'Camera off', 'Camera on', 'video'), share, hangup));
  box.hidden = false;
  const began = Date.now();
  c.tick = setInterval(() => { timer.textContent = clock((Date.now() - began) / 1000); }, 1000);
  // Without the answer the server's policy is unknown: relay only (no addresses leave
  // this browser), so a failed lookup costs the call, never the agent's addresses.
  let ice = { ice_transport_policy: 'relay' };
  try {
    ice = await api('GET', '/conversations/' + encodeURIComponent(id) + '/webrtc');
  } catch (e) { toast('The call has no network settings: ' + reason(e)); }
  if (call !== c) return;
  const pc = (c.pc = new RTCPeerConnection({ iceServers: ice.ice_servers || [], iceTransportPolicy: ice.ice_transport_policy || 'all' }));
  pc.onicecandidate = (e) => e.candidate && signal({ candidate: e.candidate.toJSON() });
  pc.ontrack = (e) => {
    if (!remote.srcObject) remote.srcObject = new MediaStream();
    remote.srcObject.addTrack(e.track);
  };
  pc.onconnectionstatechange = () => {
    box.dataset.state = pc.connectionState;
    if (pc.connectionState !== 'connected') return;
    state.textContent = '';
    route(pc).then((r) => {
      box.dataset.route = r;
      timer.title = r === 'relay' ? 'Through the TURN relay' : 'Direct';
    });
  };
  try {
    c.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (e) {
    c.stream = new MediaStream();
    toast('No camera or microphone: the visitor sees and hears nothing from here.');
  }
  if (call !== c) return c.stream.getTracks().forEach((t) => t.stop());
  local.srcObject = c.stream;
  c.cam = c.stream.getVideoTracks()[0] || null;
  // An audio and a video line whatever this side has, so that either side can share its
  // screen later by replacing the video track, without a new offer.
  for (const kind of ['audio', 'video']) {
    const track = c.stream.getTracks().find((t) => t.kind === kind);
    pc.addTransceiver(track || kind, { direction: 'sendrecv', streams: [c.stream] });
  }
  await pc.setLocalDescription(await pc.createOffer());
  signal({ sdp: pc.localDescription.toJSON() });
  tellState();
  for (const s of c.pending.splice(0)) await onSignal(s);
}

function tellState() {
  const on = (kind) => !!(call && call.stream && call.stream.getTracks().some((t) => t.kind === kind && t.enabled));
  signal({ state: { muted: !on('audio'), camera: on('video') || !!(call && call.screen) } });
}

const videoSender = () => call.pc.getTransceivers().find((t) => t.receiver.track.kind === 'video').sender;

async function shareScreen() {
  try {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
    call.screen = s.getVideoTracks()[0];
    call.screen.onended = unshare;
    await videoSender().replaceTrack(call.screen);
    call.shareBtn.textContent = 'Stop sharing';
    tellState();
  } catch (e) { /* cancelled */ }
}

async function unshare() {
  if (!call || !call.screen) return;
  call.screen.stop();
  call.screen = null;
  await videoSender().replaceTrack(call.cam);
  call.shareBtn.textContent = 'Share screen';
  tellState();
}

async function onSignal(s) {
  const c = call;
  if (!c.pc || !c.pc.localDescription) return c.pending.push(s);
  try {
    if (s.sdp && s.sdp.type === 'answer') await c.pc.setRemoteDescription(s.sdp);
    else if (s.candidate) await c.pc.addIceCandidate(s.candidate);
    else if (s.state) {
      const box = $('call');
      box.classList.toggle('peer-muted', !!s.state.muted);
      box.classList.toggle('peer-nocam', !s.state.camera);
      c.state.textContent = [s.state.muted && 'Visitor muted', !s.state.camera && 'Visitor camera off']
        .filter(Boolean).join(' · ');
    }
  } catch (e) { /* a stale signal */ }
}

function stop(data) {
  const c = call;
  call = null;
  clearInterval(c.tick);
  if (c.stream) c.stream.getTracks().forEach((t) => t.stop());
  if (c.screen) c.screen.stop();
  if (c.pc) c.pc.close();
  const box = $('call');
  clear(box);
  box.hidden = true;
  box.className = 'call';
  delete box.dataset.route;
  if (data && data.reason) toast('Call ended after ' + clock(data.duration_secs || 0) + '.');
}

/** Sign-out or another agent's session: no call survives it. */
export function resetCall() {
  if (call) stop(null);
}

// How the call's media travels: 'relay' through the TURN server, else 'host' or 'srflx'
// (straight between the browsers), from the candidate pair the connection chose.
async function route(pc) {
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
    const pair = stats.get(s.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    if (local) return local.candidateType;
  }
  return '';
}
