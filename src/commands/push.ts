import path from 'node:path'

import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../cli/base.js'
import {BuildLogView} from '../cli/build-log-view.js'
import {ExpectedError, UsageError} from '../errors.js'
import {formatBytes} from '../image/format.js'

/**
 * The upload progress line: the share of the project read into the upload (of its total size), what was sent
 * (compressed) and the mean rate since the upload began, in the units os download and os flash use.
 */
export function formatUploadProgress(event: {bytes: number; elapsedMs: number; read: number; total: number}): string {
  const rate = event.elapsedMs > 0 ? event.bytes / (event.elapsedMs / 1000) : 0
  const share = event.total > 0 ? `${Math.min(100, Math.floor((event.read / event.total) * 100))}% of ${formatBytes(event.total)}, ` : ''
  return `uploading ${share}${formatBytes(event.bytes)} sent (${formatBytes(rate)}/s)`
}

/** Time between two redraws of the upload progress line. */
const UPLOAD_LINE_INTERVAL_MS = 200

export default class Push extends FlotillaCommand {
  static override summary = "Build a project folder on the fleet's builder and release it"
  static override description = `Packs the folder (honouring .dockerignore), uploads it to the builder, streams the build, and makes the release the fleet's target when it succeeds (unless --draft or the fleet is pinned). Recognises a Dockerfile, a Dockerfile.template, Dockerfile.<device-type> / Dockerfile.<arch> variants, and docker-compose.yml with several services. In docker-compose.yml, \${VAR} is substituted from this shell and the project's .env (the shell wins), each service's env_file is merged into its environment, and a service whose build context has its own .dockerignore follows it for that folder. Images are built for the fleet's CPU architecture; a service with only an image: is pulled for it and released with the others. Images are pulled (image-only services, and the FROM images of builds) with the credentials of --registry-secrets (a YAML or JSON file: {"<registry host>": {"username", "password"}}, "" for Docker Hub) or of the project's .balena/registry-secrets.json. A push sends only the files whose contents the fleet's builder does not have from earlier pushes, and a service whose build context, Dockerfile, build args and base images are unchanged gets the image it was built into before. Ctrl-C cancels the build.`

  static override examples = [
    '<%= config.bin %> push myfleet',
    '<%= config.bin %> push myorg/myfleet --source ./app --nocache',
    '<%= config.bin %> push myfleet --release-tag version 1.2.0 --release-tag commit "$GIT_SHA" --note "nightly"',
    '<%= config.bin %> push myfleet --detached --json',
    '<%= config.bin %> push myfleet --registry-secrets ~/.balena/secrets.yml',
  ]

  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}
  static override flags = {
    source: Flags.string({char: 's', default: '.', description: 'the project folder'}),
    dockerfile: Flags.string({description: 'a Dockerfile other than the usual ones (single-service projects), relative to the source'}),
    nocache: Flags.boolean({char: 'c', description: "don't reuse the build cache"}),
    draft: Flags.boolean({description: "make a draft release: built and kept, but not the fleet's target"}),
    'release-tag': Flags.string({multiple: true, description: 'KEY VALUE pairs to tag the release with (repeat the flag or list pairs)'}),
    note: Flags.string({description: 'a note for the release'}),
    detached: Flags.boolean({char: 'd', description: 'return as soon as the build started, printing the release id'}),
    'registry-secrets': Flags.string({char: 'R', description: "a YAML or JSON file of credentials for the registries images are pulled from (image-only services and FROM images); it goes to the builder in the upload (never into an image)"}),
  }

  async run(): Promise<void> {
    const {flags, args} = await this.parse(Push)
    const releaseTags = parseReleaseTags(flags['release-tag'] ?? [])
    const client = await this.sdk()
    const options = {
      fleet: args.fleet,
      source: flags.source,
      dockerfile: flags.dockerfile,
      nocache: flags.nocache,
      draft: flags.draft,
      releaseTags,
      note: flags.note,
      environment: process.env,
      registrySecrets: flags['registry-secrets'],
      hashCacheFolder: path.join(this.config.cacheDir, 'push-hashes'),
    }
    if (flags.detached) {
      const {pushDetached} = await import('../sdk/push.js')
      const {releaseId, fleet, warnings} = await pushDetached(client, options)
      for (const warning of warnings) this.output.warn(warning)
      if (this.output.json || !this.output.stdout.isTTY) this.output.printJson({releaseId, fleet: fleet.slug, started: true})
      else this.output.line(String(releaseId))
      return
    }

    const cancel = new AbortController()
    const onInterrupt = () => {
      this.output.endProgress()
      this.output.info('cancelling the build…')
      cancel.abort()
    }

    process.once('SIGINT', onInterrupt)
    try {
      await this.streamPush(client, {...options, signal: cancel.signal})
    } finally {
      process.removeListener('SIGINT', onInterrupt)
    }
  }

  private async streamPush(client: Awaited<ReturnType<FlotillaCommand['sdk']>>, options: import('../sdk/push.js').PushOptions): Promise<void> {
    const {pushProject} = await import('../sdk/push.js')
    const view = new BuildLogView(this.output)
    const started = Date.now()
    let lastError = ''
    let lastUploadLine = 0
    const pushing = pushProject(client, options)
    let step = await pushing.next()
    try {
      while (!step.done) {
        const event = step.value
        if (this.output.json) {
          // Scripts get the project and the build events, not a line per upload chunk.
          if (event.kind !== 'upload') this.output.printJsonLine(event.kind === 'build' ? event.event : event)
        } else if (event.kind === 'project') {
          for (const warning of event.warnings) this.output.warn(warning)
          this.output.info(`pushing ${event.fleet.slug}: ${event.services.join(', ')}`)
        } else if (event.kind === 'upload' && Date.now() - lastUploadLine > UPLOAD_LINE_INTERVAL_MS) {
          lastUploadLine = Date.now()
          this.output.progress(formatUploadProgress(event))
        } else if (event.kind === 'build') {
          this.output.endProgress()
          view.show(event.event)
          if ('isError' in event.event && event.event.isError) lastError = event.event.message
        }

        step = await pushing.next()
      }
    } finally {
      this.output.endProgress()
    }

    const {releaseId, failed} = step.value
    if (failed) {
      if (!this.output.json) {
        const context = view.failureContext(lastError)
        if (context.length > 0) this.output.info(['last lines:', ...context].join('\n'))
      }

      throw new ExpectedError(`the build failed (release ${releaseId}): ${lastError.replace(/^\[[^\]]+\]\s*/, '') || 'see the log above'}`)
    }

    if (!this.output.json) await this.printSummary(client, releaseId, Date.now() - started)
  }

  private async printSummary(client: Awaited<ReturnType<FlotillaCommand['sdk']>>, releaseId: number, elapsedMs: number): Promise<void> {
    const {getReleaseImages} = await import('../sdk/releases.js')
    const {release, images} = await getReleaseImages(client, releaseId)
    this.output.success(`release ${release.commit} (id ${release.id}) built in ${(elapsedMs / 1000).toFixed(1)} s`)
    this.output.table(images, [
      {header: 'SERVICE', value: (image) => image.service},
      {header: 'IMAGE SIZE', value: (image) => formatBytes(image.image_size ?? 0)},
      {header: 'BUILD TIME', value: (image) => (image.build_seconds === null ? '' : `${image.build_seconds.toFixed(1)} s`)},
    ])
  }
}

/** `--release-tag a 1 --release-tag b 2` or `--release-tag a 1 b 2`: KEY VALUE pairs. */
export function parseReleaseTags(words: string[]): Array<[string, string]> {
  const flat = words.flatMap((word) => word.split(/\s+/).filter(Boolean))
  if (flat.length % 2 !== 0) throw new UsageError('--release-tag takes KEY VALUE pairs, e.g. --release-tag version 1.2.0')
  const pairs: Array<[string, string]> = []
  for (let index = 0; index < flat.length; index += 2) pairs.push([flat[index], flat[index + 1]])
  return pairs
}
