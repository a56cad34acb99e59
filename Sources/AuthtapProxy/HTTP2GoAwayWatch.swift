import NIOCore

/// Between TLS and NIOHTTP2's handler: follows the frames authtap writes on an HTTP/2 connection and notes a
/// GOAWAY. NIOHTTP2 reports a stream error and a connection error alike (the error, after RST_STREAM or GOAWAY), and
/// only a connection error ends the connection (RFC 9113 §5.4): one that sent GOAWAY. authtap sends GOAWAY only for
/// errors (it never shuts a connection down gracefully), so any GOAWAY written says "connection error".
final class HTTP2GoAwayWatch: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private(set) var goAwaySent = false
    private var frames = FrameBoundaries()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if !goAwaySent { goAwaySent = frames.consume(unwrapOutboundIn(data).readableBytesView) }
        context.write(data, promise: promise)
    }
}

/// Where frames begin in a stream of HTTP/2 frame bytes written in arbitrary pieces (RFC 9113 §4.1: a 9-byte
/// header whose first 3 bytes are the payload length and whose 4th is the type).
struct FrameBoundaries {
    static let goAway: UInt8 = 0x7
    /// Payload bytes still to skip before the next header.
    private var skip = 0
    private var header: [UInt8] = []

    /// Reads `bytes`; true when a GOAWAY frame's header was among them.
    mutating func consume(_ bytes: ByteBufferView) -> Bool {
        var index = bytes.startIndex
        var sawGoAway = false
        while index < bytes.endIndex {
            if skip > 0 {
                let step = min(skip, bytes.endIndex - index)
                skip -= step
                index += step
                continue
            }
            header.append(bytes[index])
            index += 1
            guard header.count == 9 else { continue }
            skip = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            if header[3] == Self.goAway { sawGoAway = true }
            header.removeAll(keepingCapacity: true)
        }
        return sawGoAway
    }
}
