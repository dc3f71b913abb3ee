/* The ring: two short tones made with WebAudio (no sound file to fetch). Browsers let a
 * page make sound only after a gesture, so any click or key unlocks it. */

import { $ } from './dom.js';
import { store, load } from './state.js';

let enabled = load('livechat.sound', 'local') !== 'off';
let audio = null; // kept across sign-outs: it was unlocked by a gesture once
let lastBeep = 0;

/** When the last ring was (ms, this machine's clock). */
export function lastBeepAt() {
  return lastBeep;
}

export function unlockAudio() {
  if (!enabled) return null;
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return null;
  if (!audio) {
    try {
      audio = new AC();
    } catch (e) {
      return null;
    }
  }
  if (audio.state === 'suspended') audio.resume().catch(() => { /* needs a gesture */ });
  return audio;
}

export function beep() {
  lastBeep = Date.now();
  if (!enabled || !audio || audio.state !== 'running') return;
  const t = audio.currentTime;
  for (const [freq, at] of [[880, 0], [660, 0.2]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t + at);
    gain.gain.exponentialRampToValueAtTime(0.25, t + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.18);
    osc.connect(gain);
    gain.connect(audio.destination);
    osc.start(t + at);
    osc.stop(t + at + 0.2);
  }
}

export function renderSound() {
  const b = $('sound');
  b.textContent = enabled ? 'Sound on' : 'Sound off';
  b.setAttribute('aria-pressed', String(enabled));
}

/** The Sound button: on or off, remembered for this browser. */
export function toggleSound() {
  enabled = !enabled;
  store('livechat.sound', enabled ? null : 'off', 'local');
  renderSound();
  if (enabled) {
    unlockAudio();
    beep();
  }
}

/** After a sign-out: nothing rang yet for the next agent. */
export function resetSound() {
  lastBeep = 0;
}
