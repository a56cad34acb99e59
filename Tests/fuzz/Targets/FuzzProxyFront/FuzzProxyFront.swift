import AuthtapCA
import AuthtapModel
import AuthtapStore
import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOSSL

@testable import AuthtapProxy

/// The proxy's client side, as a client's bytes reach it, in an `EmbeddedChannel` (no sockets, so nothing ever
/// leaves the process: an upstream connection fails at once and the client gets its 502).
///
/// First byte: the pipeline. 0: the listener's (forward proxy; CONNECT upgrades to the TLS gate in place);
/// 1: the listener's, with proxy authentication; 2: what sits above TLS inside an intercepted CONNECT.
/// Second byte: how the rest is cut into reads (0: one read; n: reads of n bytes).
let loop = EmbeddedEventLoop()
let interceptedHost = "idp.fuzz.example"

func makeShared(auth: Bool) -> ProxyShared {
    var config = ProxyConfiguration()
    config.port = 8080
    config.intercept = []  // every CONNECT is intercepted: relaying one would open a socket
    config.bodyLimit = 64 * 1024
    if auth { config.proxyAuth = (user: "fuzz", password: "fuzz-password") }
    let database = try! AppDatabase.inMemory()
    let session = try! database.startSession(version: "fuzz", arguments: [], listen: nil)
    // Closed at once: every record is counted as dropped, so a long run does not fill memory with rows.
    let writer = CaptureWriter(database: database, sessionID: session.id!, prepare: { $0 })
    writer.close()
    let (certificate, key) = try! CertificateAuthority.generate()
    let ca = try! CertificateAuthority(certificate: certificate, key: key)
    // Inline: a leaf issued on a background queue would complete its promise on the embedded loop from another
    // thread. A small capacity keeps a long run's memory flat, whatever names the inputs ask for.
    let contexts = try! ServerContextCache(ca: ca, capacity: 16, issuing: .inline)
    let connector = UpstreamConnector(
        clientTLS: try! NIOSSLContext(configuration: .makeClientConfiguration()),
        trust: UpstreamTrust(extraAnchors: [], includeSystem: false), insecure: false, connectTimeout: .seconds(1))
    let shared = ProxyShared(
        config: config, writer: writer, contexts: ServerContextCacheRef(cache: contexts),
        connector: connector, group: loop)
    shared.listenPort.store(8080, ordering: .relaxed)
    return shared
}

let plain = makeShared(auth: false)
let authenticated = makeShared(auth: true)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let mode = input.choose(3)
    let cut = Int(input.byte())
    let bytes = input.rest()
    let shared = mode == 1 ? authenticated : plain
    let decoder = ByteToMessageHandler(
        HTTPRequestDecoder(
            leftOverBytesStrategy: mode == 2 ? .dropBytes : .forwardBytes, informationalResponseStrategy: .drop,
            limitConfiguration: shared.decoderLimits))
    let encoder = HTTPResponseEncoder()
    let handler: ClientHandler
    if mode == 2 {
        handler = ClientHandler(
            shared: shared, mode: .intercepted(host: interceptedHost, port: 443), connectionID: 1,
            clientAddress: "127.0.0.1:40000", codecs: (decoder, encoder),
            facts: ConnectionFacts(),
            tunnel: Tunnel(
                connectionID: 1, clientAddress: "127.0.0.1:40000", host: interceptedHost,
                port: 443, intercepted: true, start: .init(timeIntervalSince1970: 0)))
    } else {
        handler = ClientHandler(
            shared: shared, mode: .forward, connectionID: 1, clientAddress: "127.0.0.1:40000",
            codecs: (decoder, encoder))
    }
    let channel = EmbeddedChannel(loop: loop)
    do {
        try channel.pipeline.syncOperations.addHandlers([decoder, encoder, handler])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    } catch {
        fatalError("harness: \(error)")
    }
    var offset = 0
    while offset < bytes.count, channel.isActive {
        let end = cut == 0 ? bytes.count : min(bytes.count, offset + cut)
        do {
            try channel.writeInbound(channel.allocator.buffer(bytes: bytes[offset..<end]))
        } catch {
            break  // a decoder error: the handler answered and closed, as it does on a socket
        }
        loop.run()
        offset = end
    }
    // Let timers fire (backpressure checks), then the client leaves.
    loop.advanceTime(by: .seconds(5))
    _ = try? channel.close().wait()
    loop.run()
    loop.advanceTime(by: .seconds(5))
    return 0
}

@_cdecl("FuzzProxyFront_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
