import {type RawBuilder, sql} from 'kysely'

/** The statuses balena's API computes for a device (`device.overall_status`), which its dashboard and SDK show. */
export type OverallStatus = 'inactive' | 'configuring' | 'disconnected' | 'updating' | 'reduced-functionality' | 'operational'

const VPN_CONTROL_NAMES = sql`('BALENA_SUPERVISOR_VPN_CONTROL', 'RESIN_SUPERVISOR_VPN_CONTROL')`

/**
 * `device.overall_status` as balena computes it (open-balena-api's device model), first match wins:
 * - `inactive`: the device was deactivated;
 * - `configuring`: never heard from, no link (still provisioning);
 * - `disconnected`: no link, and its heartbeat is offline or unknown;
 * - `updating`: heard from lately, and it or one of its images is downloading;
 * - `reduced-functionality`: the heartbeat timed out, or the link is up without a heartbeat, or the heartbeat is
 *   up without the link while the link is wanted (BALENA_SUPERVISOR_VPN_CONTROL is not "false");
 * - `operational` otherwise.
 * balena's provisioning states have no counterpart here. The device link stands in for balena's VPN.
 */
export function overallStatusSql(alias: string): RawBuilder<OverallStatus> {
  const field = (name: string) => sql.ref(`${alias}.${name}`)
  const linked = sql`${field('is_connected_to_vpn')} = 1`
  const heartbeat = field('api_heartbeat_state')
  const recentlyHeard = sql`${heartbeat} in ('online', 'timeout')`
  const linkWanted = sql`coalesce(
    (select dcv.value from device_config_variable as dcv where dcv.device = ${field('id')} and dcv.name in ${VPN_CONTROL_NAMES} order by dcv.name limit 1),
    (select acv.value from application_config_variable as acv where acv.application = ${field('belongs_to__application')} and acv.name in ${VPN_CONTROL_NAMES} order by acv.name limit 1),
    'not set') <> 'false'`
  const imageDownloading = sql`exists (select 1 from image_install as ii where ii.device = ${field('id')} and ii.download_progress is not null and ii.status = 'Downloading')`
  return sql<OverallStatus>`case
    when ${field('is_active')} = 0 then 'inactive'
    when not (${linked}) and ${field('last_connectivity_event')} is null and ${heartbeat} = 'unknown' then 'configuring'
    when not (${linked}) and ${heartbeat} in ('offline', 'unknown') then 'disconnected'
    when ${recentlyHeard} and ${field('download_progress')} is not null and ${field('status')} = 'Downloading' then 'updating'
    when ${recentlyHeard} and ${imageDownloading} then 'updating'
    when ${heartbeat} = 'timeout' or (${linked} and ${heartbeat} <> 'online') or (not (${linked}) and ${heartbeat} = 'online' and ${linkWanted}) then 'reduced-functionality'
    else 'operational'
  end`
}
