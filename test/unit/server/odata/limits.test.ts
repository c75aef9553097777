import {strict as assert} from 'node:assert'

import {HttpError} from '../../../../src/server/http-errors.js'
import {AnswerBudget, checkNavigationDepth, checkODataLimits, ODATA_LIMITS, type ODataLimits} from '../../../../src/server/odata/limits.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'

function refusal(run: () => unknown): string {
  try {
    run()
  } catch (error) {
    assert.ok(error instanceof HttpError, String(error))
    assert.equal(error.statusCode, 400)
    return error.message
  }

  assert.fail('expected a 400')
}

const check = (url: string, limits?: ODataLimits) => () => checkODataLimits(parseODataUrl(url), limits)

/** `owns__device($expand=belongs_to__application($expand=…))`, `levels` deep. */
function nestedExpand(levels: number): string {
  let expand = ''
  for (let level = levels; level >= 1; level--) {
    const navigation = level % 2 === 1 ? 'owns__device' : 'belongs_to__application'
    expand = expand ? `${navigation}($expand=${expand})` : navigation
  }

  return expand
}

describe('odata limits', () => {
  it('lets $expand nest up to the depth limit and refuses one level more, naming the limit', () => {
    check(`/application?$expand=${nestedExpand(ODATA_LIMITS.expandDepth)}`)()
    assert.match(refusal(check(`/application?$expand=${nestedExpand(ODATA_LIMITS.expandDepth + 1)}`)), /\$expand is nested more than 6 levels deep/)
  })

  it('counts $expand items at every level against the expansions limit', () => {
    const limits = {...ODATA_LIMITS, expansions: 3}
    check('/application?$expand=owns__device($expand=belongs_to__application),owns__release', limits)()
    assert.match(refusal(check('/application?$expand=owns__device($expand=belongs_to__application,image_install),owns__release', limits)), /more than 3 navigations/)
  })

  it('refuses a $filter nested deeper than the expression limit, at any $expand level', () => {
    const limits = {...ODATA_LIMITS, expressionDepth: 8}
    check('/device?$filter=not (id eq 1)', limits)()
    const deep = `${'not ('.repeat(10)}id eq 1${')'.repeat(10)}`
    assert.match(refusal(check(`/device?$filter=${deep}`, limits)), /\$filter is nested too deeply.*at most 8 levels/)
    assert.match(refusal(check(`/application?$expand=owns__device($filter=${deep})`, limits)), /\$filter is nested too deeply/)
  })

  it('takes a long flat or-list, which is not deep', () => {
    check(`/device?$filter=${Array.from({length: 500}, (_, index) => `id eq ${index}`).join(' or ')}`)()
  })

  for (const option of ['$top', '$skip']) {
    it(`refuses ${option} beyond 2^53 (at the top and in an $expand), and takes ordinary values`, () => {
      check(`/device?${option}=10`)()
      check(`/device?${option}=${Number.MAX_SAFE_INTEGER}`)()
      assert.match(refusal(check(`/device?${option}=18446744073709551616`)), new RegExp(`\\${option} must be a whole number from 0 to 9007199254740991`))
      assert.match(refusal(check(`/application?$expand=owns__device(${option}=99999999999999999999)`)), new RegExp(`\\${option} must be a whole number`))
    })
  }

  it('refuses navigation paths too deep, and too many nested to-many navigations', () => {
    checkNavigationDepth({navigations: 6, toMany: 2})
    assert.match(refusal(() => checkNavigationDepth({navigations: 7, toMany: 0})), /more than 6 navigations/)
    assert.match(refusal(() => checkNavigationDepth({navigations: 3, toMany: 3})), /more than 2 any\(\), all\(\) or \$count/)
  })

  describe('AnswerBudget', () => {
    const limits = {...ODATA_LIMITS, rows: 10, bytes: 2 * 1024 * 1024}

    it('asks each query for one row more than is left, and refuses fetching past the cap', () => {
      const budget = new AnswerBudget(limits)
      assert.equal(budget.queryLimit(), 11)
      budget.fetchedRows(4)
      assert.equal(budget.queryLimit(), 7)
      assert.match(refusal(() => budget.fetchedRows(7)), /more than 10 rows/)
    })

    it('refuses shaping more rows than the cap', () => {
      const budget = new AnswerBudget(limits)
      budget.shapedRows(10)
      assert.match(refusal(() => budget.shapedRows(1)), /more than 10 rows/)
    })

    it('refuses a weight over the rows or the bytes, naming the size', () => {
      const budget = new AnswerBudget(limits)
      budget.check({rows: 10, bytes: 2 * 1024 * 1024})
      assert.match(refusal(() => budget.check({rows: 11, bytes: 0})), /more than 10 rows/)
      assert.match(refusal(() => budget.check({rows: 1, bytes: 2 * 1024 * 1024 + 1})), /more than 2 MiB/)
    })
  })
})
