/** A sleep that `wake()` cuts short; a wake while nobody sleeps cuts the next sleep, so no trigger is lost. */
export class Wakeup {
  private resolve?: () => void
  private woken = false

  wait(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false
      return Promise.resolve()
    }

    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake(), ms)
      this.resolve = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  wake(): void {
    const resolve = this.resolve
    this.resolve = undefined
    if (resolve) {
      this.woken = false
      resolve()
    } else {
      this.woken = true
    }
  }
}
