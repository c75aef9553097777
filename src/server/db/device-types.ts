import type {Db} from './database.js'

/** The device types the server knows from its first start: real balenaOS slugs, their CPU architectures and names. */
export interface DeviceTypeEntry {
  slug: string
  name: string
  arch: string
  aliases: string[]
  /** The boot partition's file system and the artifact an OS image of this type is built as. */
  yocto: {machine: string; deployArtifact: string; fstype: string}
}

const image = (machine: string, fstype = 'balenaos-img') => ({machine, deployArtifact: 'balena-image.img', fstype})

export const DEVICE_TYPE_CATALOGUE: DeviceTypeEntry[] = [
  {slug: 'raspberry-pi', name: 'Raspberry Pi (v1 / Zero / Zero W)', arch: 'armv6hf', aliases: ['rpi'], yocto: image('raspberrypi')},
  {slug: 'raspberrypi3', name: 'Raspberry Pi 3', arch: 'armv7hf', aliases: [], yocto: image('raspberrypi3')},
  {slug: 'raspberrypi0-2w-64', name: 'Raspberry Pi Zero 2 W (64 bit OS)', arch: 'aarch64', aliases: [], yocto: image('raspberrypi0-2w-64')},
  {slug: 'raspberrypi4-64', name: 'Raspberry Pi 4 (using 64bit OS)', arch: 'aarch64', aliases: [], yocto: image('raspberrypi4-64')},
  {slug: 'raspberrypi5', name: 'Raspberry Pi 5', arch: 'aarch64', aliases: [], yocto: image('raspberrypi5')},
  {slug: 'fincm3', name: 'Balena Fin (CM3)', arch: 'armv7hf', aliases: [], yocto: image('fincm3')},
  {slug: 'beaglebone-black', name: 'BeagleBone Black', arch: 'armv7hf', aliases: [], yocto: image('beaglebone')},
  {slug: 'jetson-orin-nano-devkit-nvme', name: 'Nvidia Jetson Orin Nano 8GB (SD) Devkit NVME', arch: 'aarch64', aliases: [], yocto: image('jetson-orin-nano-devkit-nvme')},
  {slug: 'generic-aarch64', name: 'Generic AARCH64 (ARMv8)', arch: 'aarch64', aliases: [], yocto: image('generic-aarch64')},
  {slug: 'genericx86-64-ext', name: 'Generic x86_64', arch: 'amd64', aliases: [], yocto: image('genericx86-64-ext')},
  {slug: 'generic-amd64', name: 'Generic x86_64 (GPT)', arch: 'amd64', aliases: [], yocto: image('generic-amd64')},
  {slug: 'intel-nuc', name: 'Intel NUC', arch: 'amd64', aliases: ['nuc'], yocto: image('intel-corei7-64')},
  {slug: 'qemux86-64', name: 'QEMU X86 64bit', arch: 'amd64', aliases: [], yocto: image('qemux86-64')},
]

export const CPU_ARCHITECTURES = ['armv6hf', 'armv7hf', 'aarch64', 'i386', 'amd64']

/** The device types in the database, by slug, with their CPU architecture's slug. */
export function listDeviceTypes(db: Db): Promise<Array<{id: number; slug: string; name: string; arch: string}>> {
  return db
    .selectFrom('device_type')
    .innerJoin('cpu_architecture', 'cpu_architecture.id', 'device_type.is_of__cpu_architecture')
    .select(['device_type.id', 'device_type.slug', 'device_type.name', 'cpu_architecture.slug as arch'])
    .orderBy('device_type.slug')
    .execute()
}

/** Every alias of every device type (a type's own slug among them). */
export function listDeviceTypeAliases(db: Db): Promise<Array<{device_type: number; is_referenced_by__alias: string}>> {
  return db.selectFrom('device_type_alias').select(['device_type', 'is_referenced_by__alias']).execute()
}

/** The device type with this slug or alias, or undefined when none has it. */
export function deviceTypeNamed(db: Db, slugOrAlias: string): Promise<{id: number; slug: string} | undefined> {
  return db
    .selectFrom('device_type')
    .leftJoin('device_type_alias', 'device_type_alias.device_type', 'device_type.id')
    .select(['device_type.id', 'device_type.slug'])
    .where((eb) => eb.or([eb('device_type.slug', '=', slugOrAlias), eb('device_type_alias.is_referenced_by__alias', '=', slugOrAlias)]))
    .executeTakeFirst()
}
