import {Help} from '@oclif/core'

import {rootExamplesBody} from './root-examples.js'

/** oclif's help, with examples in the root help (package.json's `oclif.helpClass` points here, in the bundle). */
export class FlotillaHelp extends Help {
  override formatRoot(): string {
    return `${super.formatRoot()}\n\n${this.section('EXAMPLES', rootExamplesBody(this.config.bin))}`
  }
}
