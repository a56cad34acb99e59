import AuthtapCA
import AuthtapDissector
import AuthtapModel
import NIOCore
import NIOSSL

/// Per-connection facts shared by the handlers of one channel (all on its event loop).
final class ConnectionFacts {
    var clientHello: TLSDissector.ClientHello?
    var serverHello: TLSDissector.ServerHello?
    var alertsFromPeer: [TLSDissector.Alert] = []
    var bytesIn = 0
    var bytesOut = 0

    func tlsFacts(version: TLSVersion?, alpn: String?) -> TLSFacts {
        TLSFacts(
            version: serverHello.map { TLSDissector.versionName($0.selectedVersion) } ?? version.map(Self.name),
            cipher: serverHello.map { TLSDissector.cipherName($0.cipherSuite) },
            alpn: alpn ?? serverHello?.alpn,
            sni: clientHello?.serverName)
    }

    static func name(_ v: TLSVersion) -> String {
        switch v {
        case .tlsv1: return "TLSv1.0"
        case .tlsv11: return "TLSv1.1"
        case .tlsv12: return "TLSv1.2"
        case .tlsv13: return "TLSv1.3"
        }
    }
}

/// Sits at the network end of a TLS pipeline: counts bytes and reads the plaintext hellos
/// and alerts (ServerHello from whichever side sends it, alerts from the peer) with the dissector.
final class TLSObserver: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let facts: ConnectionFacts
    private var inbound: [UInt8] = []
    private var outbound: [UInt8] = []
    private var inboundDone = false
    private var outboundDone = false

    init(facts: ConnectionFacts) {
        self.facts = facts
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        facts.bytesIn += buffer.readableBytes
        if !inboundDone { inboundDone = observe(buffer, into: &inbound) }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        facts.bytesOut += buffer.readableBytes
        if !outboundDone { outboundDone = observe(buffer, into: &outbound) }
        context.write(data, promise: promise)
    }

    /// Parses records until a ServerHello, a non-TLS byte or 32 KiB; returns true when done.
    private func observe(_ buffer: ByteBuffer, into pending: inout [UInt8]) -> Bool {
        pending.append(contentsOf: buffer.readableBytesView)
        while true {
            let (parsed, consumed) = TLSDissector.parseFirstRecord(pending)
            switch parsed {
            case .incomplete:
                if pending.count > 32 * 1024 { pending = []; return true }
                return false
            case .notTLS:
                pending = []
                return true
            case .serverHello(let hello):
                facts.serverHello = hello
                pending = []
                return true
            case .clientHello(let hello):
                facts.clientHello = hello
            case .alert(let alert):
                facts.alertsFromPeer.append(alert)
            case .other(let type):
                if type == .applicationData { pending = []; return true }
            }
            pending.removeFirst(consumed)
            if pending.isEmpty { return false }
        }
    }
}

/// Holds an intercepted tunnel's first bytes until the ClientHello is read, then installs the
/// server TLS handler with a leaf for the SNI (or the CONNECT host) issued off the event loop.
/// Bytes that are not TLS are reported and the connection is closed.
final class ClientHelloGate: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var buffered: [UInt8] = []
    private var deciding = false
    private var readPending = false
    private let connectHost: String
    private let contexts: ServerContextCacheRef
    private let onNotTLS: (ChannelHandlerContext, [UInt8]) -> Void
    private let facts: ConnectionFacts

    init(
        connectHost: String, contexts: ServerContextCacheRef, facts: ConnectionFacts,
        onNotTLS: @escaping (ChannelHandlerContext, [UInt8]) -> Void
    ) {
        self.connectHost = connectHost
        self.contexts = contexts
        self.facts = facts
        self.onNotTLS = onNotTLS
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffered.append(contentsOf: buffer.readableBytesView)
        guard !deciding else { return }
        let (parsed, _) = TLSDissector.parseFirstRecord(buffered)
        switch parsed {
        case .incomplete:
            if buffered.count > 20 * 1024 { onNotTLS(context, buffered) }
        case .notTLS, .serverHello, .alert, .other:
            onNotTLS(context, buffered)
        case .clientHello(let hello):
            facts.clientHello = hello
            deciding = true
            var host = connectHost
            if let sni = hello.serverName, !sni.isEmpty { host = sni }
            contexts.cache.context(for: host, on: context.eventLoop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let sslContext):
                    self.install(sslContext, context: context)
                case .failure:
                    context.close(promise: nil)
                }
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        if deciding { readPending = true } else { context.read() }
    }

    private func install(_ sslContext: NIOSSLContext, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        let tls = NIOSSLServerHandler(context: sslContext)
        do {
            try context.pipeline.syncOperations.addHandler(tls, position: .after(self))
            try context.pipeline.syncOperations.addHandler(WriteCoalescer(), position: .after(tls))
        } catch {
            context.close(promise: nil)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: buffered.count)
        buffer.writeBytes(buffered)
        buffered = []
        context.fireChannelRead(wrapInboundOut(buffer))
        context.fireChannelReadComplete()
        let pendingRead = readPending
        readPending = false
        deciding = false
        let channel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        // A read held while the leaf was issued must be re-issued, or the connection stalls.
        if pendingRead { channel.read() }
    }
}

/// A Sendable handle on the leaf context cache.
struct ServerContextCacheRef: Sendable {
    let cache: AuthtapCA.ServerContextCache
}

/// Sits on the plaintext side of a TLS handler and joins the writes made between two flushes
/// (an HTTP head, its body, the end) into one buffer of at most 16 KiB, so that TLS seals one
/// record per message instead of one per part, and the peer opens one. Larger writes pass through.
final class WriteCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The largest TLS record's plaintext.
    static let limit = 16 * 1024
    private var pending: ByteBuffer?
    private var promise: EventLoopPromise<Void>?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        if var joined = pending {
            if joined.readableBytes + buffer.readableBytes <= Self.limit {
                pending = nil  // one owner while appending, so the append does not copy the buffer again
                joined.writeImmutableBuffer(buffer)
                pending = joined
                join(promise)
                return
            }
            emit(context)
        }
        if buffer.readableBytes >= Self.limit {
            context.write(data, promise: promise)
            return
        }
        pending = buffer
        self.promise = promise
    }

    func flush(context: ChannelHandlerContext) {
        emit(context)
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Unflushed writes reach the TLS handler, which fails or sends them as it does its own.
        emit(context)
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        emit(context)
    }

    private func join(_ next: EventLoopPromise<Void>?) {
        guard let next else { return }
        if let promise {
            promise.futureResult.cascade(to: next)
        } else {
            promise = next
        }
    }

    private func emit(_ context: ChannelHandlerContext) {
        guard let buffer = pending else { return }
        let promise = self.promise
        pending = nil
        self.promise = nil
        context.write(wrapOutboundOut(buffer), promise: promise)
    }
}
