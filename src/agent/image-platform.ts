import type Docker from 'dockerode'

import {BINFMT_MISC, emulationOf, formatPlatform, platformOfImage, runsNatively} from '../protocol/platform.js'

/**
 * Tells whether the engine can run an image: its OS is the engine's, and its CPU architecture is the engine's
 * own or one the kernel emulates (Debian's qemu-user-static, registered with binfmt_misc). When binfmt_misc is
 * not mounted where the agent runs, nothing can be told of emulation and a foreign image is tried as before.
 * An image's answer never changes, so each image is inspected once.
 */
export class ImagePlatformCheck {
  private engine?: Promise<{os: string; machine: string}>
  private readonly answers = new Map<string, Promise<string | undefined>>()

  constructor(
    private readonly docker: Docker,
    private readonly binfmtMisc = BINFMT_MISC,
  ) {}

  /** Why the engine cannot run the image of this id, or undefined when it can (or cannot tell). */
  whyUnrunnable(imageId: string): Promise<string | undefined> {
    let answer = this.answers.get(imageId)
    if (!answer) {
      answer = this.check(imageId)
      this.answers.set(imageId, answer)
      answer.catch(() => this.answers.delete(imageId))
    }

    return answer
  }

  private async check(imageId: string): Promise<string | undefined> {
    this.engine ??= this.docker.info().then((info: {OSType?: string; Architecture?: string}) => ({os: info.OSType ?? 'linux', machine: info.Architecture ?? 'unknown'}))
    const engine = await this.engine
    const platform = platformOfImage(await this.docker.getImage(imageId).inspect())
    const described = `${formatPlatform(platform)}, which this device's engine (${engine.os}, ${engine.machine}) cannot run`
    if (platform.os !== engine.os) return `is for ${described}`
    if (runsNatively(engine.machine, platform.architecture)) return undefined
    const emulation = await emulationOf(platform.architecture, this.binfmtMisc)
    if (emulation === 'enabled' || emulation === 'unknown') return undefined
    return `is for ${described}: no emulator for ${platform.architecture} is registered with binfmt_misc`
  }
}
