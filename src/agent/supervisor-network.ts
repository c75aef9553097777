import type {DesiredApp} from './reconciler.js'

export interface SupervisorNetworkOptions {
  /** The engine network's name (balena's supervisor0). */
  name: string
  /** Makes the network when missing; resolves with its gateway, the host's address on it. */
  ensure(name: string): Promise<string>
  /** Has the local API listen on that address too. */
  listenAlso(host: string): Promise<void>
  log(message: string): void
}

/**
 * The engine network services with `io.balena.features.supervisor-api` join from their app networks to reach the
 * local API at its gateway. Made when a service first needs it, so an agent whose services do not use the API adds
 * nothing to the engine; a failure is said and tried again at the next round.
 */
export class SupervisorNetwork {
  private exposed?: {name: string; gateway: string}

  constructor(private readonly options: SupervisorNetworkOptions) {}

  /** The network and the gateway the API listens on, once made. */
  get network(): {name: string; gateway: string} | undefined {
    return this.exposed
  }

  async exposeFor(apps: DesiredApp[]): Promise<void> {
    if (this.exposed) return
    const needed = apps.some((app) => app.services.some((service) => service.spec.environment.BALENA_SUPERVISOR_API_KEY && Object.keys(service.spec.networks).length > 0))
    if (!needed) return
    try {
      const gateway = await this.options.ensure(this.options.name)
      await this.options.listenAlso(gateway)
      this.exposed = {name: this.options.name, gateway}
    } catch (error) {
      this.options.log(`the local API cannot be reached from the services' networks: ${(error as Error).message}`)
    }
  }
}
