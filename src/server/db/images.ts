import type {Updateable} from 'kysely'

import type {Db} from './database.js'
import type {ImageTable} from './schema.js'
import {ensureServiceInstalls} from './service-installs.js'
import {now} from './values.js'

/** The id of a fleet's service of this name, created (with its installs on the fleet's devices) when missing. */
export async function ensureService(db: Db, fleetId: number, serviceName: string): Promise<number> {
  await db.insertInto('service').values({created_at: now(), application: fleetId, service_name: serviceName}).onConflict((conflict) => conflict.doNothing()).execute()
  const service = await db.selectFrom('service').select('id').where('application', '=', fleetId).where('service_name', '=', serviceName).executeTakeFirstOrThrow()
  await ensureServiceInstalls(db, {serviceIds: [service.id]})
  return service.id
}

/** A new image of a service, its build starting now, stored at `location`; returns its id. */
export async function createRunningImage(db: Db, image: {serviceId: number; location: string; dockerfile: string | null; projectType: string}): Promise<number> {
  const created = await db
    .insertInto('image')
    .values({created_at: now(), is_a_build_of__service: image.serviceId, is_stored_at__image_location: image.location, status: 'Running', dockerfile: image.dockerfile, project_type: image.projectType, start_timestamp: now()})
    .returning('id')
    .executeTakeFirstOrThrow()
  return created.id
}

/** Makes an image part of a release (an image may be part of several: an unchanged service's is reused). */
export async function addImageToRelease(db: Db, imageId: number, releaseId: number): Promise<void> {
  await db.insertInto('image__is_part_of__release').values({created_at: now(), image: imageId, is_part_of__release: releaseId}).execute()
}

export async function updateImage(db: Db, imageId: number, patch: Updateable<ImageTable>): Promise<void> {
  await db.updateTable('image').set(patch).where('id', '=', imageId).execute()
}

/** The fleet's latest successful image of this service built from a context of this digest, with the first release it is part of. */
export function findReusableImage(db: Db, fleetId: number, serviceName: string, contextDigest: string) {
  return db
    .selectFrom('image')
    .innerJoin('service', 'service.id', 'image.is_a_build_of__service')
    .innerJoin('image__is_part_of__release as part', 'part.image', 'image.id')
    .select(['image.id as imageId', 'image.is_stored_at__image_location as location', 'image.content_hash as contentHash', 'part.is_part_of__release as releaseId'])
    .where('service.application', '=', fleetId)
    .where('service.service_name', '=', serviceName)
    .where('image.context_digest', '=', contextDigest)
    .where('image.status', '=', 'success')
    .orderBy('image.id', 'desc')
    .orderBy('part.is_part_of__release', 'asc')
    .executeTakeFirst()
}

/** The images of a release with the names of their services. */
export function releaseImagesWithServices(db: Db, releaseId: number): Promise<Array<{id: number; service_name: string}>> {
  return db
    .selectFrom('image__is_part_of__release as part')
    .innerJoin('image', 'image.id', 'part.image')
    .innerJoin('service', 'service.id', 'image.is_a_build_of__service')
    .select(['image.id', 'service.service_name'])
    .where('part.is_part_of__release', '=', releaseId)
    .execute()
}
