import {FlotillaCommand} from '../cli/base.js'

export default class Version extends FlotillaCommand {
  static override summary = 'Show the version of flotilla and of Node.js'
  static override description = 'Prints what --version prints: flotilla/<version> <platform>-<arch> node-<version>.'
  static override examples = ['<%= config.bin %> version', '<%= config.bin %> version --json']

  async run(): Promise<void> {
    await this.parse(Version)
    const info = {flotilla: this.config.version, node: process.version, platform: `${process.platform}-${process.arch}`}
    // The very line of bin/run.js's `--version`, so that scripts can parse either.
    this.output.result(info, () => this.output.line(`flotilla/${info.flotilla} ${info.platform} node-${info.node}`))
  }
}
