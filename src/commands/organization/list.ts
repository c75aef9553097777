import {FlotillaCommand} from '../../cli/base.js'

export default class OrganizationList extends FlotillaCommand {
  static override summary = 'List the organizations you belong to'
  static override hiddenAliases = ['organizations', 'orgs']
  static override examples = ['<%= config.bin %> organization list', '<%= config.bin %> organization list --json']

  async run(): Promise<void> {
    await this.parse(OrganizationList)
    const {myOrganizations} = await import('../../sdk/organizations.js')
    const organizations = await myOrganizations(await this.sdk())
    this.output.result(organizations, () =>
      this.output.table(organizations, [
        {header: 'ID', value: (organization) => organization.id},
        {header: 'HANDLE', value: (organization) => organization.handle},
        {header: 'NAME', value: (organization) => organization.name},
      ]),
    )
  }
}
