import type {FlashProgress} from '../image/flash.js'
import {formatBytes} from '../image/format.js'
import type {DownloadProgress} from '../sdk/os-images.js'
import type {Output} from './output.js'

const BAR_WIDTH = 30
const LABELS = {write: 'Flashing ', verify: 'Verifying', download: 'Downloading'} as const

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--'
  const minutes = Math.floor(seconds / 60)
  return `${minutes}:${String(Math.floor(seconds % 60)).padStart(2, '0')}`
}

/** Flashing (and OS download) progress as people and scripts want it: a redrawn bar on a terminal (stderr), JSON lines with --json. */
export class FlashProgressView {
  private drawnPhase?: string

  constructor(
    private readonly output: Output,
    private readonly mode: 'bar' | 'json' | 'none',
  ) {}

  static for(output: Output): FlashProgressView {
    if (output.json) return new FlashProgressView(output, 'json')
    return new FlashProgressView(output, output.stderr.isTTY ? 'bar' : 'none')
  }

  update(progress: FlashProgress | DownloadProgress): void {
    if (this.mode === 'json') {
      this.output.printJsonLine({type: 'progress', ...progress})
      return
    }

    if (this.mode !== 'bar') return
    if (this.drawnPhase && this.drawnPhase !== progress.phase) this.output.stderr.write('\n')
    this.drawnPhase = progress.phase
    const fraction = Math.min(progress.fraction ?? 0, 1)
    const filled = Math.round(fraction * BAR_WIDTH)
    const label = LABELS[progress.phase]
    const remaining = progress.bytesPerSecond > 0 && progress.total ? (progress.total - progress.bytes) / progress.bytesPerSecond : Number.NaN
    const eta = progress.fraction && progress.fraction > 0 && !progress.total ? ((1 - fraction) / fraction) * (progress.bytes / Math.max(progress.bytesPerSecond, 1)) : remaining
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${formatBytes(progress.bytes)}${progress.total ? ` / ${formatBytes(progress.total)}` : ''}  ${formatBytes(progress.bytesPerSecond)}/s  ETA ${formatDuration(eta)}`
    this.output.stderr.write(`\r${line}\u001B[K`)
  }

  done(): void {
    if (this.mode === 'bar' && this.drawnPhase) this.output.stderr.write('\n')
    this.drawnPhase = undefined
  }
}
