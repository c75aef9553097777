const UNITS = ['B', 'KB', 'MB', 'GB', 'TB']

/** Bytes for people, in powers of 1000 as drive makers count (a "32 GB" card is 32·10⁹ bytes). */
export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit++
  }

  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`
}
