import { Duplex } from "node:stream";

/**
 * A socket-shaped Duplex for `pg`'s `stream` option: `pg` calls `connect(port, host)`,
 * `setNoDelay`, `setKeepAlive` and waits for `connect`; we open the real stream (e.g. an
 * SSH `direct-tcpip` channel) lazily at that moment and pipe both ways.
 */
export class LazyStream extends Duplex {
  private inner: Duplex | undefined;

  constructor(private readonly open: () => Promise<Duplex>) {
    super();
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  connect(): this {
    this.open().then(
      (s) => {
        if (this.destroyed) {
          s.destroy();
          return;
        }
        this.inner = s;
        s.on("data", (d: Buffer) => {
          if (!this.push(d)) s.pause();
        });
        s.on("end", () => this.push(null));
        s.on("error", (e: Error) => this.destroy(e));
        s.on("close", () => {
          if (!this.destroyed) this.destroy();
        });
        this.emit("connect");
      },
      (e: Error) => this.destroy(e),
    );
    return this;
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.inner) {
      cb(new Error("tunnel not open yet"));
      return;
    }
    this.inner.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner?.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}
