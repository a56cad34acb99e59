import NIOCore

/// Between TLS and NIOHTTP2's handler: follows the frames authtap writes on an HTTP/2 connection and notes a
/// GOAWAY. NIOHTTP2 reports a stream error and a connection error alike (the error, after RST_STREAM or GOAWAY), and
/// only a connection error ends the connection (RFC 9113 §5.4): one that sent GOAWAY. authtap sends GOAWAY only for
/// errors (it never shuts a connection down gracefully), so any GOAWAY written says "connection error".
final class HTTP2GoAwayWatch: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The code of the GOAWAY authtap sent, once it did.
    private(set) var goAway: UInt32?
    /// The stream and code of the last RST_STREAM authtap sent.
    private(set) var lastReset: (stream: UInt32, code: UInt32)?
    var goAwaySent: Bool { goAway != nil }
    private var frames = FrameBoundaries()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if goAway == nil {
            for sent in frames.consume(unwrapOutboundIn(data).readableBytesView) {
                switch sent {
                case .goAway(let code): goAway = code
                case .reset(let stream, let code): lastReset = (stream, code)
                }
            }
        }
        context.write(data, promise: promise)
    }
}

/// The frames that end something, in a stream of HTTP/2 frame bytes written in arbitrary pieces (RFC 9113 §4.1: a
/// 9-byte header whose first 3 bytes are the payload length, the 4th the type, the last 4 the stream).
struct FrameBoundaries {
    enum Sent: Equatable {
        /// GOAWAY (§6.8): its error code is the payload's second word.
        case goAway(code: UInt32)
        /// RST_STREAM (§6.4): its error code is the payload.
        case reset(stream: UInt32, code: UInt32)
    }

    /// Payload bytes still to skip before the next header.
    private var skip = 0
    private var header: [UInt8] = []
    /// A GOAWAY or RST_STREAM being read: its type, its stream, its payload so far, and the bytes its code ends at.
    private var reading: (type: UInt8, stream: UInt32, payload: [UInt8], need: Int)?

    /// Reads `bytes`; the GOAWAY and RST_STREAM frames whose codes were completed among them.
    mutating func consume(_ bytes: ByteBufferView) -> [Sent] {
        var sent: [Sent] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if skip > 0 {
                let step = min(skip, bytes.endIndex - index)
                if var frame = reading {
                    let take = min(step, frame.need - frame.payload.count)
                    frame.payload.append(contentsOf: bytes[index..<(index + take)])
                    reading = frame.payload.count == frame.need ? nil : frame
                    if frame.payload.count == frame.need { sent.append(Self.event(frame)) }
                }
                skip -= step
                index += step
                continue
            }
            header.append(bytes[index])
            index += 1
            guard header.count == 9 else { continue }
            skip = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            let need = header[3] == 0x7 ? 8 : header[3] == 0x3 ? 4 : 0
            if need > 0, skip >= need {
                reading = (header[3], Self.word(header[5..<9]) & 0x7FFF_FFFF, [], need)
            }
            header.removeAll(keepingCapacity: true)
        }
        return sent
    }

    private static func event(_ frame: (type: UInt8, stream: UInt32, payload: [UInt8], need: Int)) -> Sent {
        frame.type == 0x7
            ? .goAway(code: word(frame.payload[4..<8]))
            : .reset(stream: frame.stream, code: word(frame.payload[0..<4]))
    }

    private static func word(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
