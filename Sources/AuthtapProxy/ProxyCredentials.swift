import Foundation
import NIOHTTP1
import Synchronization

/// The `--proxy-auth` user and password, checked against a request's Proxy-Authorization (Basic).
public struct ProxyCredentials: Sendable, Equatable {
    public let user: String
    public let password: String

    /// `USER:PASS`; `nil` when either part is empty (an empty password would let anyone in who guesses the user).
    public init?(_ text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let user = String(text[..<colon]), password = String(text[text.index(after: colon)...])
        guard !user.isEmpty, !password.isEmpty else { return nil }
        self.init(user: user, password: password)
    }

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    /// Whether `headers` carry these credentials. The comparison takes the same time wherever the first
    /// difference is, and however long the expected value is, so timing reveals neither.
    func accepts(_ headers: HTTPHeaders) -> Bool {
        guard let value = headers.first(name: "proxy-authorization") else { return false }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: String(parts[1].trimmingSpaces))
        else { return false }
        return Self.constantTimeEqual(Array(data), Array("\(user):\(password)".utf8))
    }

    /// Every byte of `given` is compared, against `expected` cycled: the time depends on the length of what
    /// the client sent, never on where it differs nor on the secret's length.
    static func constantTimeEqual(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        guard !expected.isEmpty else { return false }
        var diff = UInt64(truncatingIfNeeded: given.count ^ expected.count)
        for i in 0..<given.count {
            diff |= UInt64(given[i] ^ expected[i % expected.count])
        }
        return diff == 0
    }
}

/// Counters the proxy reports when it stops. A reference shared by every copy of the configuration.
public final class ProxyCounters: Sendable {
    private let unauthenticatedCount = Atomic<Int>(0)

    public init() {}

    /// Requests refused for missing or wrong proxy credentials: counted, never recorded (anyone who can
    /// reach a remote listener could otherwise fill the capture database).
    public var unauthenticated: Int { unauthenticatedCount.load(ordering: .relaxed) }

    func countUnauthenticated() { unauthenticatedCount.add(1, ordering: .relaxed) }
}
