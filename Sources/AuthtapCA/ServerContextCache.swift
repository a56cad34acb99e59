import Dispatch
import NIOCore
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// Server-side TLS contexts for intercepted hosts, one per host, built off the event loop
/// and kept in a bounded LRU. `NIOSSLContext`s are expensive; a handshake only looks one up.
public final class ServerContextCache: Sendable {
    /// Where a missing leaf is issued.
    public enum Issuing: Sendable {
        /// On a background queue, so a handshake for a new host never stalls the event loop.
        case background
        /// On the caller's thread, before `context(for:on:)` returns. For an `EmbeddedEventLoop`, which a
        /// promise completed from another thread would corrupt.
        case inline
    }

    private let ca: CertificateAuthority
    private let leafKey: NIOSSLPrivateKey
    private let capacity: Int
    private struct State {
        var contexts: [String: NIOSSLContext] = [:]
        var order: [String] = []
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "authtap.leaf-issuer", attributes: .concurrent)

    private let keyLog: NIOSSLKeyLogCallback?
    private let issuing: Issuing
    /// ALPN protocols offered to clients, most preferred first.
    private let applicationProtocols: [String]

    public init(
        ca: CertificateAuthority, capacity: Int = 1024, keyLog: NIOSSLKeyLogCallback? = nil,
        issuing: Issuing = .background, applicationProtocols: [String] = ["http/1.1"]
    ) throws {
        self.keyLog = keyLog
        self.applicationProtocols = applicationProtocols
        self.issuing = issuing
        self.ca = ca
        self.capacity = capacity
        self.leafKey = try NIOSSLPrivateKey(bytes: Array(ca.leafKey.pemRepresentation.utf8), format: .pem)
    }

    /// The context for `host`, issuing its leaf on a miss where `issuing` says.
    public func context(for host: String, on eventLoop: any EventLoop) -> EventLoopFuture<NIOSSLContext> {
        let key = host.lowercased()
        if let hit = state.withLock({ $0.contexts[key] }) {
            return eventLoop.makeSucceededFuture(hit)
        }
        switch issuing {
        case .inline:
            return eventLoop.makeCompletedFuture(Result { try issue(key) })
        case .background:
            let promise = eventLoop.makePromise(of: NIOSSLContext.self)
            queue.async { [self] in
                promise.completeWith(Result { try self.issue(key) })
            }
            return promise.futureResult
        }
    }

    /// Issues `key`'s leaf and keeps its context, evicting the oldest beyond `capacity`.
    private func issue(_ key: String) throws -> NIOSSLContext {
        let context = try makeContext(for: key)
        state.withLock { s in
            if s.contexts[key] == nil {
                s.order.append(key)
                if s.order.count > capacity {
                    let evicted = s.order.removeFirst()
                    s.contexts[evicted] = nil
                }
            }
            s.contexts[key] = context
        }
        return context
    }

    private func makeContext(for host: String) throws -> NIOSSLContext {
        let leaf = try ca.issueLeaf(for: host)
        var serializer = DER.Serializer()
        try serializer.serialize(leaf)
        let nioLeaf = try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(nioLeaf)], privateKey: .privateKey(leafKey))
        config.keyLogCallback = keyLog
        config.applicationProtocols = applicationProtocols
        config.minimumTLSVersion = .tlsv1
        return try NIOSSLContext(configuration: config)
    }
}
