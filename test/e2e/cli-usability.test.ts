import {strict as assert} from 'node:assert'
import {execFile} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'

import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** One line on stderr, the exit code, and the pattern. */
function assertOneLineError(result: CliResult, exitCode: number, pattern: RegExp): void {
  assert.equal(result.exitCode, exitCode, `${result.stdout}${result.stderr}`)
  assert.match(result.stderr, pattern)
  assert.equal(result.stderr.trim().split('\n').length, 1, `one line of error expected, got: ${result.stderr}`)
}

describe('the CLI as a newcomer meets it: help, mistakes, credentials, completion', function () {
  this.timeout(120_000)
  let server: TestServer
  let home: string
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, {env: {HOME: home, FLOTILLA_URL: server.url, ...env}})

  before(async () => {
    server = await startServer()
    home = makeCliHome()
    const login = await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env: {HOME: home, FLOTILLA_URL: server.url}, input: server.admin.password})
    assert.equal(login.exitCode, 0, login.stderr)
  })

  after(async () => {
    await server?.stop()
  })

  describe('help', () => {
    it('"help", "-h" and "--help" print the root help, with examples', async () => {
      const [help, short, long] = await Promise.all([run(['help']), run(['-h']), run(['--help'])])
      for (const result of [help, short, long]) assert.equal(result.exitCode, 0, result.stderr)
      assert.equal(short.stdout, long.stdout)
      assert.equal(help.stdout, long.stdout)
      assert.match(long.stdout, /^EXAMPLES\n {2}Log in to a fleet server.*\n\n {4}\$ flotilla login --url http:\/\/127\.0\.0\.1:7171/m)
      assert.match(long.stdout, /^ {4}\$ flotilla device list --json$/m)
    })

    it('"help <command>" and "<command> -h" print the help of that command', async () => {
      const [help, short] = await Promise.all([run(['help', 'fleet', 'create']), run(['fleet', 'create', '-h'])])
      assert.equal(help.exitCode, 0, help.stderr)
      assert.match(help.stdout, /^USAGE\n {2}\$ flotilla fleet create NAME/m)
      assert.equal(short.stdout, help.stdout)
      assertOneLineError(await run(['help', 'flet']), 2, /"flet" is not a flotilla command or topic — did you mean "flotilla help fleet"\?/)
    })

    it('names a missing argument, and suggests a mistyped flag with the command as people type it', async () => {
      assertOneLineError(await run(['fleet', 'rename', 'one']), 2, /^error: missing argument NEWNAME — see "flotilla fleet rename --help"$/m)
      assertOneLineError(await run(['fleet', 'rename']), 2, /^error: missing arguments FLEET and NEWNAME — see "flotilla fleet rename --help"$/m)
      assertOneLineError(await run(['fleet', 'list', '--jsn']), 2, /^error: unknown flag --jsn \(did you mean --json\?\) — see "flotilla fleet list --help"$/m)
      assertOneLineError(await run(['os', 'download', 'intel-nuc']), 2, /^error: missing required flag --output — see "flotilla os download --help"$/m)
    })

    it('hints at the subcommand when a mistyped one is taken as a fleet name', async () => {
      assertOneLineError(await run(['fleet', 'lst']), 1, /fleet "lst" not found.*\("lst" was read as the FLEET; did you mean "flotilla fleet list"\?\)$/m)
    })
  })

  describe('input that used to end in "please report it"', () => {
    it('says what a server URL must look like', async () => {
      const noScheme = await runCli(['login', '--url', '127.0.0.1:7399', '--token', '-'], {env: {HOME: makeCliHome()}, input: 'x'})
      assertOneLineError(noScheme, 2, /--url must be a server URL with http:\/\/ or https:\/\/ .* not "127\.0\.0\.1:7399" — did you mean "http:\/\/127\.0\.0\.1:7399"\?$/m)
      const badScheme = await runCli(['login', '--url', 'htp:/bad', '--token', '-'], {env: {HOME: makeCliHome()}, input: 'x'})
      assertOneLineError(badScheme, 2, /--url must be a server URL .* not "htp:\/bad"/)
      assertOneLineError(await run(['fleet', 'list'], {FLOTILLA_URL: 'htp:/bad'}), 2, /FLOTILLA_URL must be a server URL/)
    })

    it('names FLOTILLA_TOKEN when the server refuses it, and takes an empty one as unset', async () => {
      const refused = await run(['fleet', 'list'], {FLOTILLA_TOKEN: 'x'.repeat(32)})
      assertOneLineError(refused, 1, /rejected FLOTILLA_TOKEN .*unset it to use your stored login/)
      assert.doesNotMatch(refused.stderr, /run "flotilla login"/)
      const empty = await run(['whoami', '--json'], {FLOTILLA_TOKEN: ''})
      assert.equal(empty.exitCode, 0, empty.stderr)
      assert.equal(JSON.parse(empty.stdout).username, server.admin.username)
    })

    it('lists the devices an ambiguous UUID prefix matches', async () => {
      const api = new FleetApi(server.url)
      const token = await api.login(server.admin.username, server.admin.password)
      const fleet = await api.createFleet(token, 'twins')
      const uuids = ['5a5a5a5' + '0'.repeat(25), '5a5a5a5' + '1'.repeat(25)]
      for (const uuid of uuids) await api.registerDevice(token, fleet.id, uuid)
      const result = await run(['device', '5a5a5a5'])
      assertOneLineError(result, 2, /device "5a5a5a5" is ambiguous: it matches 5a5a5a50{25} \(5a5a5a5\), 5a5a5a51{25} \(5a5a5a5\) — give more characters/)
      const table = await run(['device', 'list', '--fleet', 'twins'])
      assert.match(table.stdout, /^5a5a5a50 /m)
      assert.match(table.stdout, /^5a5a5a51 /m)
    })
  })

  it('prints timestamps in tables to the second, and with milliseconds in --json', async () => {
    assert.equal((await run(['api-key', 'generate', 'stamp'])).exitCode, 0)
    const table = await run(['api-key', 'list'])
    assert.match(table.stdout, /stamp +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /)
    const [key] = JSON.parse((await run(['api-key', 'list', '--json'])).stdout) as Array<{created_at: string}>
    assert.match(key.created_at, /\.\d{3}Z$/)
  })

  it('"version" prints what "--version" prints', async () => {
    const [command, flag] = await Promise.all([run(['version']), run(['--version'])])
    assert.equal(command.stdout, flag.stdout)
    assert.match(flag.stdout, /^flotilla\/\d+\.\d+\.\d+\S* linux-\w+ node-v\d+/)
  })

  it('takes --device-type, and --deviceType as balena-cli spells it', async () => {
    await run(['fleet', 'create', 'typed', '--type', 'raspberrypi4-64'])
    for (const flag of ['--device-type', '--deviceType']) {
      const result = await run(['device', 'register', 'typed', flag, 'raspberrypi3', '--json'])
      assert.equal(result.exitCode, 0, result.stderr)
      assert.equal(JSON.parse(result.stdout).device_type, 'raspberrypi3')
    }

    const help = await run(['device', 'register', '--help'])
    assert.match(help.stdout, /--device-type=<value>/)
  })

  describe('auth status', () => {
    it('tells the server and user, and where each comes from', async () => {
      const human = await run(['auth', 'status'])
      assert.equal(human.exitCode, 0, human.stderr)
      assert.match(human.stdout, new RegExp(`^server +${server.url.replaceAll('.', '\\.')} \\(from FLOTILLA_URL\\)$`, 'm'))
      assert.match(human.stdout, /^logged in as +admin .*\(user\)$/m)
      assert.match(human.stdout, /^token +stored by "flotilla login"$/m)
      const json = JSON.parse((await run(['auth', 'status', '--json'])).stdout)
      assert.deepEqual([json.url, json.urlSource, json.tokenSource, json.username], [server.url, 'environment', 'login', server.admin.username])
    })

    it('exits 1 naming the server when not logged in', async () => {
      assertOneLineError(await runCli(['auth', 'status'], {env: {HOME: makeCliHome(), FLOTILLA_URL: server.url}}), 1, /not logged in to http:\/\/127\.0\.0\.1:\d+ \(from FLOTILLA_URL\)/)
    })
  })

  describe('shell completion', () => {
    const exec = promisify(execFile)

    /** What a real bash completes for the words typed, with the script `flotilla completion bash` printed. */
    async function bashCompletes(words: string[]): Promise<{candidates: string[]; registration: string}> {
      const script = path.join(home, 'flotilla.bash')
      writeFileSync(script, (await run(['completion', 'bash'])).stdout)
      const typed = words.map((word) => `'${word}'`).join(' ')
      const program = `source '${script}'; COMP_WORDS=(${typed}); COMP_CWORD=${words.length - 1}; _flotilla; complete -p flotilla; printf '%s\\n' "\${COMPREPLY[@]}"`
      const {stdout} = await exec('bash', ['--norc', '--noprofile', '-c', program])
      const [registration, ...candidates] = stdout.trim().split('\n')
      return {candidates, registration}
    }

    it('bash loads the script and completes commands, subcommands and flags', async () => {
      const first = await bashCompletes(['flotilla', 'fl'])
      assert.equal(first.registration, 'complete -o default -F _flotilla flotilla')
      assert.deepEqual(first.candidates, ['fleet'])
      assert.deepEqual((await bashCompletes(['flotilla', 'fleet', 'l'])).candidates, ['list'])
      assert.deepEqual((await bashCompletes(['flotilla', 'fleet', 'list', '--j'])).candidates, ['--json'])
      assert.deepEqual((await bashCompletes(['flotilla', 'server', 'user', 'p'])).candidates, ['password'])
    })

    it('prints zsh and fish scripts, and refuses another shell', async () => {
      const zsh = await run(['completion', 'zsh'])
      assert.match(zsh.stdout, /bashcompinit/)
      assert.match(zsh.stdout, /complete -o default -F _flotilla flotilla/)
      const fish = await run(['completion', 'fish'])
      assert.match(fish.stdout, /^complete -c flotilla -f -a '\(__flotilla_complete\)'$/m)
      assertOneLineError(await run(['completion', 'tcsh']), 2, /tcsh/)
    })
  })
})
