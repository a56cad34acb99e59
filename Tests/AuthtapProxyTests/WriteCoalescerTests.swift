import NIOCore
import NIOEmbedded
import Testing

@testable import AuthtapProxy

/// What reaches the TLS handler below the coalescer: one buffer per flush for small parts, large
/// writes as they are, every promise completed, nothing kept back at a close.
@Suite struct WriteCoalescerTests {
    func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(WriteCoalescer())
        return channel
    }

    func outbound(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: buffer)) }
        return out
    }

    @Test(arguments: [
        // (writes before the flush, what the TLS handler receives)
        (["HTTP/1.1 200 OK\r\n\r\n", "{\"a\":1}", ""], ["HTTP/1.1 200 OK\r\n\r\n{\"a\":1}"]),
        (["only"], ["only"]),
        ([String](), [String]()),
    ])
    func partsBetweenFlushesBecomeOneWrite(writes: [String], expected: [String]) throws {
        let channel = try channel()
        var futures: [EventLoopFuture<Void>] = []
        for w in writes { futures.append(channel.write(ByteBuffer(string: w))) }
        #expect(try outbound(channel).isEmpty)
        channel.flush()
        #expect(try outbound(channel) == expected)
        for f in futures { #expect(throws: Never.self) { try f.wait() } }
        _ = try channel.finish()
    }

    @Test func largeWritesPassThroughInOrder() throws {
        let channel = try channel()
        let big = String(repeating: "x", count: WriteCoalescer.limit)
        let small = channel.write(ByteBuffer(string: "head"))
        let large = channel.write(ByteBuffer(string: big))
        let tail = channel.write(ByteBuffer(string: "tail"))
        channel.flush()
        #expect(try outbound(channel) == ["head", big, "tail"])
        for f in [small, large, tail] { #expect(throws: Never.self) { try f.wait() } }
        _ = try channel.finish()
    }

    @Test func joinedWritesStopAtTheRecordLimit() throws {
        let channel = try channel()
        let part = String(repeating: "y", count: WriteCoalescer.limit / 2)
        for _ in 0..<3 { channel.write(ByteBuffer(string: part), promise: nil) }
        channel.flush()
        #expect(try outbound(channel) == [part + part, part])
        _ = try channel.finish()
    }

    /// Records the outbound operations that reach it (where the TLS handler sits).
    final class Below: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var seen: [String] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            seen.append("write " + String(buffer: unwrapOutboundIn(data)))
            context.write(data, promise: promise)
        }
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            seen.append("close")
            context.close(mode: mode, promise: promise)
        }
    }

    @Test func closeHandsHeldWritesDownFirst() throws {
        // The TLS handler then deals with them as with any unflushed write: nothing stays held here.
        let channel = EmbeddedChannel()
        let below = Below()
        try channel.pipeline.syncOperations.addHandlers([below, WriteCoalescer()])
        channel.write(ByteBuffer(string: "bye"), promise: nil)
        #expect(below.seen.isEmpty)
        try channel.close().wait()
        #expect(below.seen == ["write bye", "close"])
    }
}
