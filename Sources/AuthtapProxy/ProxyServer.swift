import AuthtapCA
import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// State shared by every connection: configuration, the writer, TLS material, per-loop pools and flushes, counters.
final class ProxyShared: Sendable {
    let config: ProxyConfiguration
    let writer: any ExchangeSink
    let contexts: ServerContextCacheRef
    let connector: UpstreamConnector
    /// What each event loop keeps for itself: its idle upstream connections and its turn's flushes.
    struct LoopLocal {
        let pool = UpstreamPool()
        let flushes = FlushBatch()
    }
    let loopLocals: [ObjectIdentifier: NIOLoopBound<LoopLocal>]
    let connectionIDs = Atomic<UInt64>(0)
    let inflight = Atomic<Int>(0)
    let listenPort = Atomic<Int>(0)
    let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    let decoderLimits: NIOHTTPDecoderLimitConfiguration

    init(
        config: ProxyConfiguration, writer: any ExchangeSink, contexts: ServerContextCacheRef,
        connector: UpstreamConnector, group: any EventLoopGroup
    ) {
        self.config = config
        self.writer = writer
        self.contexts = contexts
        self.connector = connector
        var loopLocals: [ObjectIdentifier: NIOLoopBound<LoopLocal>] = [:]
        for loop in group.makeIterator() {
            // A loop-bound value must be created on its loop (already there for an embedded loop in tests).
            loopLocals[ObjectIdentifier(loop)] =
                loop.inEventLoop
                ? NIOLoopBound(LoopLocal(), eventLoop: loop)
                : try? loop.submit { NIOLoopBound(LoopLocal(), eventLoop: loop) }.wait()
        }
        self.loopLocals = loopLocals
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = config.maxHeaderBytes
        limits.maxHeaderFieldSize = config.maxHeaderBytes
        self.decoderLimits = limits
    }

    /// The client leg's deadlines, from the configuration.
    var clientTimeouts: ConnectionDeadlines.Timeouts { .client(config.limits) }

    /// A client connection's HTTP/1 codecs, the decoder bounded by the header limits.
    func requestCodecs(
        leftOverBytes: RemoveAfterUpgradeStrategy
    ) -> (ByteToMessageHandler<HTTPRequestDecoder>, HTTPResponseEncoder) {
        let decoder = ByteToMessageHandler(
            HTTPRequestDecoder(
                leftOverBytesStrategy: leftOverBytes, informationalResponseStrategy: .drop,
                limitConfiguration: decoderLimits))
        return (decoder, HTTPResponseEncoder())
    }

    /// The client's address as records show it.
    static func address(of channel: any Channel) -> String {
        channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
    }

    /// A new client connection: its id, and a place in the list `shutdown` closes.
    func register(_ channel: any Channel) -> UInt64 {
        let key = ObjectIdentifier(channel)
        channels.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { _ in _ = self.channels.withLock { $0.removeValue(forKey: key) } }
        return connectionIDs.add(1, ordering: .relaxed).newValue
    }

    func pool(for loop: any EventLoop) -> UpstreamPool {
        loopLocals[ObjectIdentifier(loop)]!.value.pool
    }

    /// Flushes `context` once its event loop has handled every socket ready in this turn.
    func flushAtEndOfTurn(_ context: ChannelHandlerContext) {
        loopLocals[ObjectIdentifier(context.eventLoop)]!.value.flushes.add(context)
    }
}

/// The listening proxy. `start()` binds; `shutdown()` stops accepting, lets in-flight exchanges
/// finish (up to the grace period), closes everything and flushes the writer.
public final class ProxyServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let shared: ProxyShared
    private let serverChannels = Mutex<[any Channel]>([])

    public init(config: ProxyConfiguration, ca: CertificateAuthority, trust: UpstreamTrust, writer: any ExchangeSink)
        throws
    {
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, config.threads))
        var clientConfig = TLSConfiguration.makeClientConfiguration()
        clientConfig.applicationProtocols = config.applicationProtocols
        clientConfig.minimumTLSVersion = .tlsv12
        clientConfig.certificateVerification = .fullVerification
        clientConfig.keyLogCallback = config.keyLog
        let clientContext = try NIOSSLContext(configuration: clientConfig)
        var connector = UpstreamConnector(
            clientTLS: clientContext, trust: trust, insecure: config.insecureUpstream,
            connectTimeout: .nanoseconds(Int64(config.connectTimeout * 1e9)),
            timeouts: .upstream(config.limits))
        connector.http2 = config.http2
        shared = ProxyShared(
            config: config, writer: writer,
            contexts: ServerContextCacheRef(
                cache: try ServerContextCache(
                    ca: ca, keyLog: config.keyLog, applicationProtocols: config.applicationProtocols)),
            connector: connector, group: group)
    }

    /// A listener's bootstrap: its accept gate and socket options, without what each connection runs.
    private func serverBootstrap() -> ServerBootstrap {
        let shared = self.shared
        return ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
            // One accept per read, so that the gate can hold accepting exactly at --max-connections.
            .serverChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .serverChannelInitializer { channel in
                let governor = AcceptGovernor(maxConnections: shared.config.limits.effectiveMaxConnections)
                let gate = AcceptGate(governor: governor, log: ProxyServer.logLine)
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(gate) }
            }
    }

    /// Binds the forward listener and starts accepting. Returns the bound address.
    public func start() async throws -> SocketAddress {
        let shared = self.shared
        let bootstrap = serverBootstrap()
            .childChannelInitializer { channel in
                let id = shared.register(channel)
                // After a CONNECT the decoder hands on the bytes that followed it, which are the tunnel's.
                let (decoder, encoder) = shared.requestCodecs(leftOverBytes: .forwardBytes)
                let handler = ClientHandler(
                    shared: shared, mode: .forward, connectionID: id, clientAddress: ProxyShared.address(of: channel),
                    codecs: (decoder, encoder))
                do {
                    let timer = ClientTimeoutHandler(timeouts: shared.clientTimeouts)
                    handler.timer = timer
                    try channel.pipeline.syncOperations.addHandlers([
                        timer, decoder, encoder, ClientRequestTimeoutHandler(timer: timer), handler,
                    ])
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        return try await bind(bootstrap, host: shared.config.host, port: shared.config.port)
    }

    private func bind(_ bootstrap: ServerBootstrap, host: String, port: Int) async throws -> SocketAddress {
        let channel = try await bootstrap.bind(host: host, port: port).get()
        serverChannels.withLock { $0.append(channel) }
        guard let address = channel.localAddress else { throw ChannelError.ioOnClosedChannel }
        // The first listener is the one a request aimed back at authtap itself would loop through.
        if shared.listenPort.load(ordering: .relaxed) == 0 {
            shared.listenPort.store(address.port ?? 0, ordering: .relaxed)
        }
        return address
    }

    /// Binds one reverse listener per `config.reverse` target (instead of the forward listener): TLS with a leaf
    /// for the name the client asks for (or the listen address), HTTP/2 or HTTP/1.1, every request to the target.
    /// Returns each target with its bound address.
    public func startReverse() async throws -> [(target: ReverseTarget, host: String, port: Int)] {
        var bound: [(target: ReverseTarget, host: String, port: Int)] = []
        for target in shared.config.reverse {
            let host = target.listenHost ?? shared.config.host
            let bootstrap = serverBootstrap().childChannelInitializer { [shared] channel in
                channel.eventLoop.makeCompletedFuture {
                    try ProxyServer.initializeReverse(channel, target: target, listenHost: host, shared: shared)
                }
            }
            let address = try await bind(bootstrap, host: host, port: target.listenPort ?? shared.config.port)
            bound.append((target, address.ipAddress ?? host, address.port ?? 0))
        }
        return bound
    }

    private static func initializeReverse(
        _ channel: any Channel, target: ReverseTarget, listenHost: String, shared: ProxyShared
    ) throws {
        let id = shared.register(channel)
        let facts = ConnectionFacts()
        let (decoder, encoder) = shared.requestCodecs(leftOverBytes: .dropBytes)
        let handler = ClientHandler(
            shared: shared, mode: .reverse(target), connectionID: id, clientAddress: ProxyShared.address(of: channel),
            codecs: (decoder, encoder), facts: facts)
        let timer = ClientTimeoutHandler(timeouts: shared.clientTimeouts, start: .interceptedTunnel)
        handler.timer = timer
        // A client that sends no SNI (it dialled an address) gets a leaf for the listen address.
        let gate = ClientHelloGate(connectHost: listenHost, contexts: shared.contexts, facts: facts) { ctx, bytes in
            handler.rejectNonTLS(bytes, context: ctx)
        }
        try channel.pipeline.syncOperations.addHandlers([
            timer, TLSObserver(facts: facts), gate, decoder, encoder, ClientRequestTimeoutHandler(timer: timer),
            handler,
        ])
    }

    public var inflight: Int { shared.inflight.load(ordering: .relaxed) }

    /// Where the listener's own conditions (descriptors exhausted, the connection cap reached) are reported.
    @Sendable static func logLine(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Stops accepting, waits up to `grace` for in-flight exchanges, closes connections,
    /// then flushes the writer (every completed exchange is on disk when this returns).
    public func shutdown(grace: TimeInterval = 5) async {
        for channel in serverChannels.withLock({ $0 }) {
            try? await channel.close()
        }
        let deadline = Date().addingTimeInterval(grace)
        while shared.inflight.load(ordering: .relaxed) > 0, Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        let open = shared.channels.withLock { Array($0.values) }
        for channel in open {
            try? await channel.close()
        }
        for loop in group.makeIterator() {
            let bound = shared.loopLocals[ObjectIdentifier(loop)]!
            try? await loop.submit { bound.value.pool.closeAll() }.get()
        }
        // Let close events run so their records are submitted before the writer drains.
        try? await Task.sleep(nanoseconds: 50_000_000)
        shared.writer.close()
        try? await group.shutdownGracefully()
    }
}
