import path from 'node:path'

import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../../cli/base.js'
import {databaseFlag, databaseUrlOf} from '../../../cli/database-flag.js'
import {readPasswordFromPipe} from '../../../cli/prompts.js'

export default class ServerUserPassword extends FlotillaCommand {
  static override summary = 'Set the password of a user of the local fleet server, ending all their sessions'
  static override description = `Writes straight into the server's database: SQLite in the data directory, or PostgreSQL with --database or FLOTILLA_DATABASE_URL (also while the server runs). Every session token of the user stops working at once; their API keys keep working until revoked.
Without --password-stdin a password is generated and printed once.`

  static override examples = [
    '<%= config.bin %> server user password --username ada',
    'printf "%s" "$PASSWORD" | <%= config.bin %> server user password --username ada --password-stdin',
  ]

  static override flags = {
    username: Flags.string({description: 'username or email of the user', required: true}),
    'password-stdin': Flags.boolean({description: 'read the new password from stdin instead of generating one'}),
    'data-dir': Flags.string({description: 'data directory of the server [default: <flotilla data dir>/server]'}),
    database: databaseFlag,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServerUserPassword)
    const dataDir = path.resolve(flags['data-dir'] ?? path.join(this.config.dataDir, 'server'))
    const databaseUrl = await databaseUrlOf(flags.database, (message) => this.output.warn(message))
    const password = flags['password-stdin'] ? await readPasswordFromPipe('flotilla server user password …') : undefined
    const {setServerUserPassword} = await import('../../../server/user-admin.js')
    const result = await setServerUserPassword({dataDir, databaseUrl, login: flags.username, password})
    this.output.result(result.generatedPassword ? {username: result.username, password: result.generatedPassword} : {username: result.username}, () => {
      if (result.generatedPassword) this.output.line(`new password of "${result.username}": ${result.generatedPassword}`)
      else this.output.success(`password of "${result.username}" set; their sessions have ended`)
    })
  }
}
