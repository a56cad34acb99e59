import Testing

@testable import AuthtapProxy

/// A burst of exchanges to an origin with no connection yet: the first opens it, the others wait for what it
/// becomes, and are told once.
struct UpstreamPoolTests {
    @Test func exchangesWaitForTheConnectionBeingOpenedAndAreToldOnce() {
        let pool = UpstreamPool()
        #expect(!pool.waitForOpening("https://idp:443") { _ in })
        #expect(pool.startOpening("https://idp:443"))
        #expect(!pool.startOpening("https://idp:443"))
        var told: [Bool] = []
        #expect(pool.waitForOpening("https://idp:443") { told.append($0 == nil) })
        #expect(pool.waitForOpening("https://idp:443") { told.append($0 == nil) })
        // Another origin is opened on its own.
        #expect(pool.startOpening("https://api:443"))
        pool.finishOpening("https://idp:443", session: nil)
        #expect(told == [true, true])
        pool.finishOpening("https://idp:443", session: nil)
        #expect(told.count == 2)
        // Once finished, the next exchange opens again.
        #expect(pool.startOpening("https://idp:443"))
    }
}
