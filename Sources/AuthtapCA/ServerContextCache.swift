import Dispatch
import NIOCore
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// Server-side TLS contexts for intercepted hosts, one per host, built off the event loop
/// and kept in a bounded LRU. `NIOSSLContext`s are expensive; a handshake only looks one up.
public final class ServerContextCache: Sendable {
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

    public init(ca: CertificateAuthority, capacity: Int = 1024, keyLog: NIOSSLKeyLogCallback? = nil) throws {
        self.keyLog = keyLog
        self.ca = ca
        self.capacity = capacity
        self.leafKey = try NIOSSLPrivateKey(bytes: Array(ca.leafKey.pemRepresentation.utf8), format: .pem)
    }

    /// The context for `host`, issuing its leaf on a background queue on a miss.
    public func context(for host: String, on eventLoop: any EventLoop) -> EventLoopFuture<NIOSSLContext> {
        let key = host.lowercased()
        if let hit = state.withLock({ $0.contexts[key] }) {
            return eventLoop.makeSucceededFuture(hit)
        }
        let promise = eventLoop.makePromise(of: NIOSSLContext.self)
        queue.async { [self] in
            do {
                let context = try self.makeContext(for: key)
                self.state.withLock { s in
                    if s.contexts[key] == nil {
                        s.order.append(key)
                        if s.order.count > self.capacity {
                            let evicted = s.order.removeFirst()
                            s.contexts[evicted] = nil
                        }
                    }
                    s.contexts[key] = context
                }
                promise.succeed(context)
            } catch {
                promise.fail(error)
            }
        }
        return promise.futureResult
    }

    private func makeContext(for host: String) throws -> NIOSSLContext {
        let leaf = try ca.issueLeaf(for: host)
        var serializer = DER.Serializer()
        try serializer.serialize(leaf)
        let nioLeaf = try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(nioLeaf)], privateKey: .privateKey(leafKey))
        config.keyLogCallback = keyLog
        config.applicationProtocols = ["http/1.1"]
        config.minimumTLSVersion = .tlsv1
        return try NIOSSLContext(configuration: config)
    }
}
