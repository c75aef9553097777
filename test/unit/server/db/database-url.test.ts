import {strict as assert} from 'node:assert'

import {parseDatabaseUrl} from '../../../../src/server/db/database-url.js'
import {UsageError} from '../../../../src/errors.js'

describe('database URLs (--database, FLOTILLA_DATABASE_URL)', () => {
  it('names where a PostgreSQL database is without its password', () => {
    assert.deepEqual(parseDatabaseUrl('postgres://fleet:s3cret@db.example.com:6543/fleets', '--database'), {url: 'postgres://fleet:s3cret@db.example.com:6543/fleets', address: 'db.example.com:6543', database: 'fleets'})
    const local = parseDatabaseUrl('postgresql://fleet@127.0.0.1/fl%C3%B6tilla', '--database')
    assert.deepEqual([local.address, local.database], ['127.0.0.1:5432', 'flötilla'])
    assert.equal(parseDatabaseUrl('postgres:///fleets?host=/run/postgresql', '--database').address, '/run/postgresql')
  })

  it('refuses what is not a PostgreSQL URL, naming where it came from and never repeating it', () => {
    for (const [text, message] of [
      ['postgres//nope:secret@host/db', /^FLOTILLA_DATABASE_URL is not a URL/],
      ['mysql://root:secret@host/db', /^FLOTILLA_DATABASE_URL must be a PostgreSQL URL \(postgres:\/\/…\), not a mysql: one/],
      ['postgres://root:secret@host/%zz', /^FLOTILLA_DATABASE_URL has a malformed database name/],
      ['postgres://%zz:secret@host/db', /^FLOTILLA_DATABASE_URL has a malformed user name/],
    ] as const) {
      assert.throws(() => parseDatabaseUrl(text, 'FLOTILLA_DATABASE_URL'), (error: Error) => error instanceof UsageError && message.test(error.message) && !error.message.includes('secret'), text)
    }
  })
})
