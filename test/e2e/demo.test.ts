import {strict as assert} from 'node:assert'
import {spawn} from 'node:child_process'
import net from 'node:net'

import Docker from 'dockerode'

import {launchBrowser, openPage} from '../helpers/browser.js'
import {PROJECT_ROOT} from '../helpers/cli.js'
import {eventually} from '../helpers/fleet-api.js'

/** Runs `npm run demo`'s script to its end; its stdout and stderr together, as a person sees them. */
async function runDemo(env: NodeJS.ProcessEnv): Promise<{exitCode: number | null; output: string}> {
  const child = spawn('bash', ['scripts/demo.sh'], {cwd: PROJECT_ROOT, env: {...process.env, NO_COLOR: '1', ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  return {exitCode, output}
}

describe('npm run demo: server, agent, push of examples/hello, logs --tail', function () {
  this.timeout(240_000)

  it('shows the pushed service’s output through the logs of the device it runs on, on ports it picks, and cleans up after itself', async () => {
    // No port given: the demo must not use the usual ones, which another server or agent on the machine may hold.
    const demoPorts = ['FLOTILLA_DEMO_PORT', 'FLOTILLA_DEMO_SSH_PORT', 'FLOTILLA_AGENT_API_PORT']
    const {exitCode, output} = await runDemo({FLOTILLA_DEMO_LINES: '2', ...Object.fromEntries(demoPorts.map((name) => [name, undefined]))})
    assert.equal(exitCode, 0, output)
    const serverPort = Number(/demo: fleet server at http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1])
    assert.ok(serverPort > 0 && serverPort !== 7171, output)
    const uuid = /device ([\da-f]{32}) registered/.exec(output)?.[1]
    assert.ok(uuid, output)
    const lines = output.split('\n').filter((line) => line.includes(`[hello] hello from ${uuid} (hello), greeting=hi there`))
    assert.equal(lines.length, 2, output)
    assert.match(lines[0], /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] \[hello\] /)
    // The shell in the service, through the server's SSH gateway and the device link.
    assert.match(output, /^demo: flotilla ssh [\da-f]{32} hello -- uname -sm\nLinux \S+$/m)
    const leftovers = await new Docker().listContainers({all: true, filters: {label: [`io.flotilla.device-uuid=${uuid}`]}})
    assert.deepEqual(leftovers, [])
  })

  it('prints the dashboard’s address and credentials: signed in there, a person watches the demo device’s logs arrive', async () => {
    // Its own process group, so the test can press Ctrl-C as a person would: every process of the demo gets SIGINT.
    const demo = spawn('bash', ['scripts/demo.sh'], {cwd: PROJECT_ROOT, env: {...process.env, NO_COLOR: '1', FLOTILLA_DEMO_LINES: undefined}, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    let output = ''
    demo.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    demo.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve))
    const browser = await launchBrowser()
    try {
      const [, url, email, password] = await eventually(async () => /^demo: dashboard at (\S+) \(sign in as (\S+), password (\S+)\)$/m.exec(output) ?? undefined, `the dashboard's address\n${output}`, 60_000)
      const uuid = (await eventually(async () => /^demo: following the logs of ([\da-f]{32}) /m.exec(output) ?? undefined, `the demo to follow the logs\n${output}`, 180_000))[1]
      const {page, context} = await openPage(browser)
      await page.goto(url)
      await page.getByLabel('Email or username').fill(email)
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', {name: 'Sign in'}).click()
      await page.getByRole('link', {name: 'hello', exact: true}).click()
      await page.getByRole('region', {name: 'Devices'}).getByRole('link').first().click()
      // The uuid shows in the page's header and in the log lines the service writes.
      await page.getByText(uuid).first().waitFor()
      const logs = page.getByRole('region', {name: 'Logs'})
      const lines = () => logs.getByText(`hello from ${uuid} (hello), greeting=hi there`).count()
      const first = await eventually(async () => lines(), `the service's lines in the page\n${output}`, 30_000)
      await eventually(async () => (await lines()) > first, 'a new line to arrive in the page', 30_000)
      await context.close()
      process.kill(-demo.pid!, 'SIGINT')
      assert.equal(await exited, 130, output)
      const leftovers = await new Docker().listContainers({all: true, filters: {label: [`io.flotilla.device-uuid=${uuid}`]}})
      assert.deepEqual(leftovers, [])
    } finally {
      await browser.close()
      if (demo.exitCode === null) process.kill(-demo.pid!, 'SIGINT')
      // A demo that does not stop on Ctrl-C must not hide the failure above behind the test's own timeout.
      const killer = setTimeout(() => process.kill(-demo.pid!, 'SIGKILL'), 20_000)
      await exited
      clearTimeout(killer)
    }
  })

  it('stops as soon as the agent dies, printing the agent’s log', async () => {
    // The agent's local API port, taken: the agent cannot start.
    const holder = net.createServer()
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
    const {port} = holder.address() as net.AddressInfo
    try {
      const started = Date.now()
      const {exitCode, output} = await runDemo({FLOTILLA_AGENT_API_PORT: String(port)})
      assert.notEqual(exitCode, 0, output)
      assert.match(output, /^demo: the agent exited \(code \d+\) before it was registered; its log:$/m)
      assert.match(output, /^ {2}.*EADDRINUSE/m)
      assert.ok(Date.now() - started < 60_000, `the demo waited for a dead agent: ${output}`)
    } finally {
      holder.close()
    }
  })
})
