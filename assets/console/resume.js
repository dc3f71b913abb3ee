/* The event stream's arithmetic: its address (it resumes after the last event seen),
 * which events are new, and how long to wait before trying again. Pure. */

/** The agent event stream of the page at `protocol`//`host`, after event `lastSeq`. */
export function eventsUrl(protocol, host, lastSeq) {
  return (protocol === 'https:' ? 'wss://' : 'ws://') + host +
    '/api/v1/agent/events?after=' + lastSeq;
}

/** Whether a frame is news: frames without a seq (typing) always are, a replayed one
 *  (seq at or below the last seen) is not. */
export function isNew(frame, lastSeq) {
  return typeof frame.seq !== 'number' || frame.seq > lastSeq;
}

/** The wait before attempt `tries` (1, 2…): 0.5 s doubling up to 15 s, spread ±25 % by
 *  `random` (0 ≤ random < 1) so that many consoles do not come back at once. */
export function retryDelay(tries, random) {
  const base = Math.min(15000, 500 * Math.pow(2, Math.min(tries - 1, 5)));
  return base * (0.75 + random / 2);
}

/** A socket that stayed open this long was healthy: the next failure starts over. */
export const HEALTHY_MS = 10000;
