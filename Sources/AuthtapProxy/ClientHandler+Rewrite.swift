import AuthtapCodec
import NIOCore
import NIOHTTP1

/// `--rewrite-urls` on a reverse listener: the upstream's origin in `Location` and in JSON bodies becomes the
/// origin the client used, so that discovery, redirects and JWKS URLs keep the client on the proxy. The record
/// keeps what the server sent, with a note of what the client got instead.
extension ClientHandler {
    /// The rewriter for a request on a reverse listener with `--rewrite-urls`, towards the Host the client used.
    func rewriter(for head: HTTPRequestHead) -> OriginRewriter? {
        guard case .reverse(let target) = mode, target.rewriteURLs, let host = head.headers.first(name: "host"),
            !host.isEmpty,
            host.utf8.allSatisfy({ b in
                (b >= 0x30 && b <= 0x3A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
                    || b == 0x2E || b == 0x5B || b == 0x5D
            })
        else { return nil }
        return OriginRewriter(from: target.origin, to: "https://\(host)")
    }

    /// A reverse request's Origin and Referer name the listener; the upstream is told its own origin instead, the
    /// inverse of the response rewrite (a CSRF check such as Django's compares Origin with the Host it was sent).
    func rewriteRequestOrigins(_ headers: inout HTTPHeaders) {
        guard let rewrite else { return }
        let back = OriginRewriter(from: rewrite.to, to: rewrite.from)
        for name in ["Origin", "Referer"] {
            guard let value = headers.first(name: name), let changed = back.rewriteHeader(value) else { continue }
            headers.replaceOrAdd(name: name, value: changed)
            recorder.noteRequestChange("authtap sent \(name) as \(rewrite.from) upstream (--rewrite-urls)")
        }
    }

    /// The response head to send now (its Location rewritten), or `nil` when it waits for its body to be rewritten.
    func rewrittenHead(_ head: HTTPResponseHead) -> HTTPResponseHead? {
        guard let rewrite else { return head }
        var head = head
        for name in ["Location", "Content-Location"] {
            guard let value = head.headers.first(name: name), let changed = rewrite.rewriteHeader(value) else {
                continue
            }
            head.headers.replaceOrAdd(name: name, value: changed)
            recorder.noteResponseChange("authtap rewrote \(name) to \(rewrite.to) for the client (--rewrite-urls)")
        }
        let type = head.headers.first(name: "content-type")
        let bodiless = current?.head.method == .HEAD || head.status == .noContent || head.status == .notModified
        guard !bodiless, OriginRewriter.rewritesBody(contentType: type) else { return head }
        heldResponse = (head, ByteBuffer())
        return nil
    }

    /// Keeps a body part of a held response; `false` when none is held. A body past the limit is sent on as it
    /// came, unrewritten (discovery documents and key sets are kilobytes).
    func holdResponseBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) -> Bool {
        guard let held = heldResponse else { return false }
        guard held.body.readableBytes + buffer.readableBytes <= Self.rewriteLimit else {
            heldResponse = nil
            recorder.noteResponseChange("authtap did not rewrite this body: it is over \(Self.rewriteLimit) bytes")
            context.write(wrapOutboundOut(.head(held.head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(held.body))), promise: nil)
            return false
        }
        heldResponse?.body.writeImmutableBuffer(buffer)
        return true
    }

    static let rewriteLimit = 4 << 20

    /// Sends the held response: its body decoded (gzip, br, zstd, deflate) and rewritten, its length set to the new
    /// size. A body that does not decode goes on as it came.
    func releaseHeldResponse(_ context: ChannelHandlerContext) {
        guard let (head, body) = heldResponse.take(), let rewrite else { return }
        var sent = head
        var original = Array(body.readableBytesView)
        if let coding = head.headers.first(name: "content-encoding") {
            let decoded = BodyDecoder.decode(
                original, contentEncoding: coding, transferEncoding: nil, limit: Self.rewriteLimit, inputComplete: true)
            guard decoded.failure == nil, !decoded.truncated else {
                recorder.noteResponseChange("authtap did not rewrite this body: it does not decode as \(coding)")
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                return
            }
            original = decoded.bytes
            sent.headers.remove(name: "content-encoding")
        }
        let (bytes, count) = rewrite.rewrite(original)
        sent.headers.remove(name: "transfer-encoding")
        sent.headers.replaceOrAdd(name: "Content-Length", value: String(bytes.count))
        if count > 0 {
            let decoded = head.headers.first(name: "content-encoding").map { ", sent decoded from \($0)" } ?? ""
            recorder.noteResponseChange(
                "authtap rewrote \(count) URL\(count == 1 ? "" : "s") of \(rewrite.from) to \(rewrite.to) "
                    + "in the body the client got\(decoded) (--rewrite-urls)")
        }
        context.write(wrapOutboundOut(.head(sent)), promise: nil)
        if !bytes.isEmpty {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        }
    }
}
