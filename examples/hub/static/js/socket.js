// One WebSocket that reconnects with backoff (1 s doubling to 15 s). Its owner
// decides from the close code whether to stop, and builds the URL on every
// attempt, which is how a room resumes with ?since= after a drop.

export class Conn {
  /**
   * opts: url() -> string, onFrame(frame), onOpen(), onClose(event, opened) -> 'stop' | undefined,
   *       onStatus(state), onFailBeforeOpen(count)
   */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    this.failsBeforeOpen = 0;
  }
  start() {
    this.stopped = false;
    this.connect();
    return this;
  }
  connect() {
    clearTimeout(this.timer);
    this.retryAt = null;
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.opts.url());
    } catch (_) {
      this.schedule();
      return;
    }
    this.ws = ws;
    this.opened = false;
    this.status(this.attempt ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.opened = true;
      this.failsBeforeOpen = 0;
      this.status('connected');
      if (this.opts.onOpen) this.opts.onOpen();
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch (_) { return; }
      if (!frame || typeof frame !== 'object') return;
      try {
        this.opts.onFrame(frame);
      } catch (e) {
        console.error('frame handler failed', frame, e);
      }
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (!this.opened) this.failsBeforeOpen += 1;
      const verdict = this.opts.onClose ? this.opts.onClose(ev, this.opened, this.failsBeforeOpen) : undefined;
      if (verdict === 'stop') {
        this.stopped = true;
        return;
      }
      this.schedule();
    };
  }
  schedule() {
    if (this.stopped) return;
    const delay = Math.min(15000, 1000 * 2 ** this.attempt);
    this.attempt += 1;
    // When the next attempt is due, for the "retrying in N s" countdown.
    this.retryAt = Date.now() + delay;
    this.status('reconnecting');
    this.timer = setTimeout(() => this.connect(), delay);
  }
  /** "Retry now": the next attempt goes at once. */
  retryNow() {
    if (this.stopped || this.ws) return;
    this.connect();
  }
  /** The connection proved useful: the next drop starts the backoff at 1s again. */
  healthy() {
    this.attempt = 0;
  }
  status(s) {
    if (this.opts.onStatus) this.opts.onStatus(s);
  }
  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }
  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try { ws.close(1000); } catch (_) { /* already closing */ }
    }
  }
}
