import AuthtapModel
import Foundation
import NIOCore

/// Byte counts and the ending of a relayed (not intercepted) tunnel; written once when it closes.
final class TunnelStats {
    var tunnel: Tunnel
    private let writer: any ExchangeSink
    private var submitted = false

    init(tunnel: Tunnel, writer: any ExchangeSink) {
        self.tunnel = tunnel
        self.writer = writer
    }

    func closed(side: String, error: (any Error)?) {
        if tunnel.ending == "open" {
            tunnel.ending = FailureClassifier.isReset(error) ? "\(side)-reset" : "\(side)-closed"
        }
    }

    func submit() {
        guard !submitted else { return }
        submitted = true
        tunnel.durationMs = Date().timeIntervalSince(tunnel.start) * 1000
        writer.submit(tunnel)
    }
}

/// Joins two channels byte for byte, as in swift-nio-examples' connect-proxy: reads are held
/// while the partner is not writable, and a close on one side closes the other.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let stats: TunnelStats
    private let isClientSide: Bool
    private var lastError: (any Error)?

    private init(stats: TunnelStats, isClientSide: Bool) {
        self.stats = stats
        self.isClientSide = isClientSide
    }

    static func matchedPair(stats: TunnelStats) -> (GlueHandler, GlueHandler) {
        let client = GlueHandler(stats: stats, isClientSide: true)
        let upstream = GlueHandler(stats: stats, isClientSide: false)
        client.partner = upstream
        upstream.partner = client
        return (client, upstream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The partner may have held a read while this side was not yet in its pipeline.
        partner?.partnerBecameWritable()
    }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ buffer: ByteBuffer) { context?.write(wrapOutboundOut(buffer), promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerClose() { context?.close(promise: nil) }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }
    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if isClientSide {
            stats.tunnel.bytesFromClient += buffer.readableBytes
        } else {
            stats.tunnel.bytesFromUpstream += buffer.readableBytes
        }
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        lastError = error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stats.closed(side: isClientSide ? "client" : "upstream", error: lastError)
        partner?.partnerClose()
        if isClientSide { stats.submit() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
