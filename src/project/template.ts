import {ExpectedError} from '../errors.js'

export interface TemplateTarget {
  /** The fleet's device type slug, e.g. `raspberrypi4-64`. */
  deviceType: string
  /** Its CPU architecture slug, e.g. `aarch64`. */
  arch: string
}

const VARIABLE = /%%([A-Z][A-Z_]+)%%/g

function templateVariables(target: TemplateTarget): Map<string, string> {
  return new Map([
    ['BALENA_MACHINE_NAME', target.deviceType],
    ['RESIN_MACHINE_NAME', target.deviceType],
    ['BALENA_ARCH', target.arch],
    ['RESIN_ARCH', target.arch],
  ])
}

/**
 * Fills in the `%%VARIABLE%%` placeholders of a `Dockerfile.template` for one device type.
 * As in balena's builder, a line starting with `#` is a comment and stays as written, and an unknown
 * variable is an error rather than a broken `FROM` line.
 */
export function resolveDockerfileTemplate(text: string, target: TemplateTarget): string {
  const variables = templateVariables(target)
  return text
    .split('\n')
    .map((line, index) => {
      if (line.startsWith('#')) return line
      return line.replaceAll(VARIABLE, (placeholder, name: string) => {
        const value = variables.get(name)
        if (value === undefined) {
          throw new ExpectedError(
            `Dockerfile template line ${index + 1} uses ${placeholder}, which is not a known variable — use one of ${[...variables.keys()].map((known) => `%%${known}%%`).join(', ')}`,
          )
        }

        return value
      })
    })
    .join('\n')
}
