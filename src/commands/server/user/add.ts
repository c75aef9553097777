import path from 'node:path'

import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../../cli/base.js'
import {databaseFlag, databaseUrlOf} from '../../../cli/database-flag.js'
import {readPasswordFromPipe} from '../../../cli/prompts.js'

export default class ServerUserAdd extends FlotillaCommand {
  static override summary = 'Add a user to the local fleet server'
  static override description = `Writes straight into the server's database: SQLite in the data directory, or PostgreSQL with --database or FLOTILLA_DATABASE_URL (also while the server runs), creating the user and their personal organization.
Without --password-stdin a password is generated and printed once.`

  static override examples = [
    '<%= config.bin %> server user add --email ada@example.com --username ada',
    'printf "%s" "$PASSWORD" | <%= config.bin %> server user add --email ada@example.com --username ada --password-stdin --organization acme',
  ]

  static override flags = {
    email: Flags.string({description: 'email address of the user', required: true}),
    username: Flags.string({description: 'username (also the handle of their personal organization)', required: true}),
    'password-stdin': Flags.boolean({description: 'read the password from stdin instead of generating one'}),
    organization: Flags.string({description: 'handle of an existing organization to also make the user a member of'}),
    'data-dir': Flags.string({description: 'data directory of the server [default: <flotilla data dir>/server]'}),
    database: databaseFlag,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServerUserAdd)
    const dataDir = path.resolve(flags['data-dir'] ?? path.join(this.config.dataDir, 'server'))
    const databaseUrl = await databaseUrlOf(flags.database, (message) => this.output.warn(message))
    const password = flags['password-stdin'] ? await readPasswordFromPipe('flotilla server user add …') : undefined
    const {addServerUser} = await import('../../../server/user-admin.js')
    const result = await addServerUser({dataDir, databaseUrl, email: flags.email, username: flags.username, password, organization: flags.organization})
    const summary = {username: result.username, email: result.email, organization: flags.organization ?? null}
    this.output.result(result.generatedPassword ? {...summary, password: result.generatedPassword} : summary, () => {
      if (result.generatedPassword) this.output.line(`created user "${result.username}" with password: ${result.generatedPassword}`)
      else this.output.success(`created user "${result.username}"`)
    })
  }
}
