import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1

/// Builds the record of each exchange on one client connection and hands every record (exchanges, late ones,
/// TLS failures, the tunnel) to the sink. The only place on the client side that submits.
struct ExchangeRecorder {
    private let shared: ProxyShared
    private let connectionID: UInt64
    private let clientAddress: String
    /// The exchange in progress.
    private(set) var exchange: Exchange?
    /// A response that completed before its request did (the server answered without reading the whole
    /// body): recorded once the request's remaining body has been read, or the client leaves.
    private var awaitingRequestEnd: Exchange?
    private var started = NIODeadline.now()
    private var requestBody = BodyCapture(limit: 0)
    private var responseBody = BodyCapture(limit: 0)
    /// What authtap changed in the response the client got (`--rewrite-urls`), noted on the recorded body.
    private var responseNotes: [String] = []
    /// What authtap changed in the request on its way upstream (`--rewrite-urls`), noted on the recorded body.
    private var requestNotes: [String] = []

    init(shared: ProxyShared, connectionID: UInt64, clientAddress: String) {
        self.shared = shared
        self.connectionID = connectionID
        self.clientAddress = clientAddress
    }

    var isOpen: Bool { exchange != nil }
    var hasError: Bool { exchange?.error != nil }
    var connectionReused: Bool { exchange?.connectionReused == true }
    var tlsFailure: TLSFailureReason? { exchange?.tlsFailure }
    var requestBodySize: Int { requestBody.size }

    func ms(_ at: NIODeadline) -> Double { Double((at - started).nanoseconds) / 1e6 }

    func record(method: String, scheme: Scheme, host: String, port: Int, target: String) -> Exchange {
        Exchange(
            connectionID: connectionID, clientAddress: clientAddress, scheme: scheme, host: host, port: port,
            method: method, target: target, start: Date())
    }

    // MARK: The exchange in progress

    /// A request head arrived: the clock and the body captures restart.
    mutating func requestStarted() {
        started = .now()
        requestBody = BodyCapture(limit: shared.config.bodyLimit)
        responseBody = BodyCapture(limit: shared.config.bodyLimit)
        responseNotes = []
        requestNotes = []
    }

    /// Notes a change authtap made to the request on its way upstream (the record keeps the client's).
    mutating func noteRequestChange(_ text: String) { requestNotes.append(text) }

    /// Notes a change authtap made to the response on its way to the client (the record keeps the server's).
    mutating func noteResponseChange(_ text: String) { responseNotes.append(text) }

    mutating func open(_ record: Exchange) {
        exchange = record
        shared.inflight.add(1, ordering: .relaxed)
    }

    /// A record for bytes that never made a request (a parse error before any head).
    mutating func openPlaceholder() {
        open(record(method: "?", scheme: .http, host: "", port: 0, target: ""))
    }

    /// Forgets the exchange in progress without recording it.
    mutating func discard() {
        guard exchange.take() != nil else { return }
        shared.inflight.subtract(1, ordering: .relaxed)
    }

    mutating func update(_ change: (inout Exchange) -> Void) {
        guard var ex = exchange.take() else { return }
        change(&ex)
        exchange = ex
    }

    mutating func requestBodyPart(_ buffer: ByteBuffer) { requestBody.append(buffer) }

    /// A body part of a request whose response is recorded already (nothing else is kept).
    mutating func discardedBodyPart(_ buffer: ByteBuffer) {
        if awaitingRequestEnd != nil { requestBody.append(buffer) }
    }

    mutating func requestEnded() {
        let captured = requestBody.captured
        exchange?.requestBody = captured
    }

    mutating func requestSent() {
        let now = ms(.now())
        exchange?.timings.requestSent = now
    }

    mutating func upstreamConnected(_ handler: UpstreamHandler) {
        if handler.reported {
            exchange?.connectionReused = true
        } else {
            handler.reported = true
            let connect = handler.connectedAt.map(ms)
            exchange?.timings.connect = connect
        }
    }

    mutating func responseHead(_ head: HTTPResponseHead) {
        let now = ms(.now())
        exchange?.timings.firstByte = now
        exchange?.status = Int(head.status.code)
        exchange?.responseHeaders = head.headers.map { HeaderField($0.name, $0.value) }
    }

    mutating func responseBodyPart(_ buffer: ByteBuffer) { responseBody.append(buffer) }

    mutating func responseEnded() {
        let captured = responseBody.captured
        exchange?.responseBody = captured
    }

    /// The exchange ends with `kind` (after whatever of the response was read).
    mutating func failed(_ kind: ErrorKind, detail: String, responseRead: Bool = false) {
        exchange?.error = kind
        exchange?.errorDetail = detail
        if responseRead { responseEnded() }
    }

    /// Authtap answered the request itself.
    mutating func answered(
        _ kind: ErrorKind, status: HTTPResponseStatus, detail: String, headers: HTTPHeaders,
        sentence: String
    ) {
        guard var ex = exchange.take() else { return }
        ex.status = Int(status.code)
        ex.error = kind
        ex.errorDetail = detail
        ex.responseHeaders = headers.map { HeaderField($0.name, $0.value) }
        ex.responseBody = CapturedBody(bytes: Array(sentence.utf8), size: sentence.utf8.count)
        ex.requestBody = requestBody.captured
        ex.timings.firstByte = ms(.now())
        exchange = ex
    }

    /// Completes the record in progress (end time, upstream TLS facts); it stays here until `submitFinished` or
    /// `holdUntilRequestEnd`. Returns whether it failed and whether it records a CONNECT, or `nil` when none is
    /// in progress.
    mutating func finish(upstream handler: UpstreamHandler?) -> (failed: Bool, isConnect: Bool)? {
        guard var ex = exchange.take() else { return nil }
        shared.inflight.subtract(1, ordering: .relaxed)
        ex.timings.end = ms(.now())
        ex.insecureUpstream = ex.scheme == .https && shared.config.insecureUpstream
        if let handler {
            ex.upstreamTLS = handler.tlsFacts()
            if !ex.connectionReused, let at = handler.handshakeAt {
                let tls = ms(at)
                ex.timings.tls = tls
                // Writes wait in the TLS handler until the handshake is done.
                if let sent = ex.timings.requestSent, sent < tls { ex.timings.requestSent = tls }
            }
        }
        ex.requestBody = requestBody.captured
        for note in responseNotes { ex.responseBody.addNote(note) }
        for note in requestNotes { ex.requestBody.addNote(note) }
        exchange = ex
        return (exchange?.error != nil, exchange?.method == "CONNECT")
    }

    /// The finished record waits for the rest of its request's body.
    mutating func holdUntilRequestEnd() { awaitingRequestEnd = exchange.take() }

    mutating func submitFinished() {
        // Moved out, not copied: a copy would retain and then release every field of the record.
        guard let ex = exchange.take() else { return }
        submit(ex)
    }

    /// Records a response that waited for its request's end (now, or as the client leaves).
    mutating func submitLate() {
        guard var late = awaitingRequestEnd.take() else { return }
        late.requestBody = requestBody.captured
        submit(late)
    }

    // MARK: Records of their own

    /// A record that is complete when made (a failed TLS handshake, non-TLS bytes in a tunnel).
    func submitStandalone(_ record: consuming Exchange) { submit(record) }

    func submit(_ tunnel: Tunnel) { shared.writer.submit(tunnel) }

    private func submit(_ record: consuming Exchange) { shared.writer.submit(record) }
}

/// The first `limit` bytes of a streamed body, and its full size.
struct BodyCapture {
    let limit: Int
    private(set) var bytes: [UInt8] = []
    private(set) var size = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ buffer: ByteBuffer) {
        size += buffer.readableBytes
        let room = limit - bytes.count
        if room > 0 {
            bytes.append(contentsOf: buffer.readableBytesView.prefix(room))
        }
    }

    var captured: CapturedBody { CapturedBody(bytes: bytes, size: size) }
}
