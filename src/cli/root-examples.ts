/**
 * The EXAMPLES section of the root help: the first steps of a newcomer. Shared by the help oclif prints
 * (src/cli/help.ts) and the one printed without loading oclif (src/cli/root-help.ts), so both say the same.
 * Lines are never wrapped: a command cut in two is harder to copy than one the terminal wraps.
 */
export const ROOT_EXAMPLES: ReadonlyArray<{description: string; command: string}> = [
  {description: 'Log in to a fleet server (start a local one with "server start")', command: 'login --url http://127.0.0.1:7171 --credentials --email me@example.com'},
  {description: 'Create a fleet', command: 'fleet create myfleet --type raspberrypi4-64'},
  {description: 'Build the project in this folder and deploy it to the fleet', command: 'push myfleet --source .'},
  {description: 'List the devices, as JSON for scripts', command: 'device list --json'},
  {description: 'Follow the logs of a device', command: 'logs 7cf02a6 --tail'},
  {description: 'Help for a topic or a command', command: 'help fleet create'},
]

/** The body of the EXAMPLES section, before indentation: a description, then the command under it. */
export function rootExamplesBody(bin: string): string {
  return ROOT_EXAMPLES.map(({description, command}) => `${description}\n\n  $ ${bin} ${command}`).join('\n\n')
}
