/**
 * [flotilla] Re-pushes that send only what changed. Before `POST /v3/build`, the client asks the builder which file
 * contents of the fleet's earlier uploads it still has (`POST /v3/build/contents?slug=<org/fleet>` with
 * `{"sha256": [<hex>, …]}` → `{"missing": [<hex>, …]}`); in the build upload, a file whose contents the builder has
 * is a tar entry of no data whose PAX records name its contents (`FLOTILLA.sha256`, `FLOTILLA.size`). The builder
 * hashes every file it receives itself and keeps contents per fleet: a reference reaches only what the same fleet
 * uploaded, by the hash the builder computed.
 */

/** The path of the contents query, beside `/v3/build`. */
export const BUILD_CONTENTS_PATH = '/v3/build/contents'

/** PAX record of a file entry: the SHA-256 (hex) of the file's contents. */
export const CONTENT_HASH_RECORD = 'FLOTILLA.sha256'
/** PAX record of a reference entry: the size of the contents it stands for (the entry itself carries none). */
export const CONTENT_SIZE_RECORD = 'FLOTILLA.size'

export interface ContentsQuery {
  sha256: string[]
}

export interface ContentsAnswer {
  missing: string[]
}

/** What a content hash looks like on the wire: SHA-256, lower-case hex. */
export const CONTENT_HASH_PATTERN = /^[\da-f]{64}$/
