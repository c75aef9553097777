/**
 * [flotilla] An action a user asked of a device through `POST /supervisor/<path>`, as the agent collects it from
 * `GET /device/v3/:uuid/actions` (a long poll; the SSH device link will carry these instead).
 */
export type DeviceAction =
  | {action: 'restart'; appId: number}
  | {action: 'restart-service' | 'stop-service' | 'start-service'; appId: number; serviceName?: string; imageId?: number}
  | {action: 'reboot' | 'shutdown'; force: boolean}
  | {action: 'purge'; appId: number; force?: boolean}
  /** Identify the device (balena blinks its LED). */
  | {action: 'blink'}

export function deviceActionsPath(uuid: string): string {
  return `/device/v3/${uuid}/actions`
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The actions of an answer the agent can act on; anything else is dropped. */
export function deviceActionsOf(body: unknown): DeviceAction[] {
  if (!Array.isArray(body)) return []
  return body.filter((item): item is DeviceAction => isRecord(item) && typeof item.action === 'string')
}
