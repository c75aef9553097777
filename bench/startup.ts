/** Startup: median wall time of common invocations beside a bare `node -e 0` measured in the same run. */
import {CLI_BIN, makeCliHome, runCli} from '../test/helpers/cli.js'
import {startServer} from '../test/helpers/server.js'
import {medianTimes, timeCommand} from './measure.js'

const ROUNDS = 21
const TARGETS: Record<string, number> = {'--version': 2.5, '--help': 2.5, 'fleet list --json': 3.5}

export async function run(): Promise<void> {
  const server = await startServer()
  try {
    const home = makeCliHome()
    const env = {PATH: process.env.PATH, HOME: home, NO_COLOR: '1', FLOTILLA_URL: server.url}
    const login = await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
    if (login.exitCode !== 0) throw new Error(`login failed: ${login.stderr}`)
    const node = process.execPath
    const times = medianTimes(
      {
        'node -e 0': () => timeCommand(node, ['-e', '0'], env),
        '--version': () => timeCommand(node, [CLI_BIN, '--version'], env),
        '--help': () => timeCommand(node, [CLI_BIN, '--help'], env),
        'fleet list --json': () => timeCommand(node, [CLI_BIN, 'fleet', 'list', '--json'], env),
      },
      ROUNDS,
    )
    const reference = times['node -e 0']
    process.stdout.write(`startup, median of ${ROUNDS} runs (reference: node -e 0 = ${reference.toFixed(1)} ms)\n`)
    for (const [name, target] of Object.entries(TARGETS)) {
      const ratio = times[name] / reference
      const verdict = ratio <= target ? 'ok' : 'OVER TARGET'
      process.stdout.write(`  flotilla ${name.padEnd(18)} ${times[name].toFixed(1).padStart(7)} ms  ${ratio.toFixed(2)}× node  (target ≤ ${target}×: ${verdict})\n`)
    }
  } finally {
    await server.stop()
  }
}
