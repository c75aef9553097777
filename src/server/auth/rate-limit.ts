/**
 * Failed logins counted per IP and username in a sliding window: past the limit, logins are refused (429) until the
 * oldest failure leaves the window, whether or not the password is right.
 */
export class LoginRateLimiter {
  private readonly failures = new Map<string, number[]>()

  constructor(
    private readonly maxFailures = 10,
    private readonly windowMs = 5 * 60_000,
  ) {}

  /** Seconds to wait before trying again, or 0 when a login may be tried now. */
  retryAfterSeconds(key: string, now = Date.now()): number {
    const recent = this.recent(key, now)
    if (recent.length < this.maxFailures) return 0
    return Math.max(1, Math.ceil((recent[0] + this.windowMs - now) / 1000))
  }

  recordFailure(key: string, now = Date.now()): void {
    this.failures.set(key, [...this.recent(key, now), now])
  }

  reset(key: string): void {
    this.failures.delete(key)
  }

  private recent(key: string, now: number): number[] {
    const recent = (this.failures.get(key) ?? []).filter((time) => time > now - this.windowMs)
    if (recent.length === 0) this.failures.delete(key)
    else this.failures.set(key, recent)
    return recent
  }
}
