import ArgumentParser
import AuthtapCA
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Dispatch
import Foundation

/// The recording half of the proxy, without the network: the exact `/token` exchange of
/// `../shared/bench` pushed N times through the proxy's masking and its one writer.
/// `scripts/bench-record` runs it (`authtap-bench record`); it reports CPU per exchange for each stage.
struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Measure masking and storing of bench /token exchanges (no network).",
        aliases: ["bench-record"])
    @OptionGroup var capture: BenchCapture
    @Option(help: "Number of exchanges.")
    var exchanges: Int = 100_000

    func run() throws {
        let (database, masker, sessionID) = try capture.open(arguments: ["bench-record"])
        let raw = Self.tokenExchange()

        // Stage 1: masking alone, on this thread.
        // Three rounds, the best one reported: a shared 2-core VM is noisy.
        let maskCount = min(exchanges, 20_000)
        var sink = 0
        var maskUs = Double.infinity
        for _ in 0..<3 {
            let ledger = JWTLedger()
            let c0 = Self.threadCPU()
            for _ in 0..<maskCount { sink &+= masker.record(raw, ledger: ledger).oauthParams.count }
            maskUs = min(maskUs, (Self.threadCPU() - c0) / Double(maskCount) * 1e6)
            if ProcessInfo.processInfo.environment["AUTHTAP_BENCH_VERBOSE"] != nil {
                print(String(format: "  mask round: %.1f µs", (Self.threadCPU() - c0) / Double(maskCount) * 1e6))
            }
        }
        sink /= 3

        // Stage 2: inserting masked exchanges in the writer's batches, on this thread (best of 3).
        let batch = CaptureWriter.Limits().batchSize
        var masked = masker.record(raw, ledger: JWTLedger())
        masked.sessionID = try database.startSession(
            version: authtapVersion, arguments: ["bench-record", "insert"], listen: nil
        ).id
        var insertUs = Double.infinity
        for _ in 0..<3 {
            let c0 = Self.threadCPU()
            var done = 0
            while done < maskCount {
                let n = min(batch, maskCount - done)
                try database.insert(exchanges: Array(repeating: masked, count: n), tunnels: [])
                done += n
            }
            insertUs = min(insertUs, (Self.threadCPU() - c0) / Double(maskCount) * 1e6)
        }

        // Stage 3: the proxy's path: submit → the writer thread masks and inserts (process CPU, all threads).
        let writerLedger = JWTLedger()
        let p0 = Self.processCPU()
        let t0 = DispatchTime.now()
        let writer = CaptureWriter(
            database: database, sessionID: sessionID, prepare: { masker.record($0, ledger: writerLedger) })
        for i in 0..<exchanges {
            var e = raw
            e.connectionID = UInt64(i / 1000 + 1)
            while writer.isBackedUp { usleep(200) }
            writer.submit(e)
        }
        writer.close()
        let wall = Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9
        let cpuUs = (Self.processCPU() - p0) / Double(exchanges) * 1e6
        let stored = try database.countExchanges(session: sessionID, filter: BrowseFilter())
        print(String(format: "mask: %.1f µs/exchange (%d params)", maskUs, sink / maskCount))
        print(String(format: "insert: %.1f µs/exchange (batches of %d)", insertUs, batch))
        print(
            String(
                format: "submit+mask+insert: %.1f µs CPU/exchange, %.0f exchanges/s wall, "
                    + "%d of %d stored in the writer's session",
                cpuUs, Double(exchanges) / wall, stored, exchanges))
        if stored != exchanges { throw ExitCode(1) }
    }

    static func threadCPU() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func processCPU() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The bench's request (RFC 6749 §4.1.3 with PKCE and client_secret_basic) and nginx's answer.
    static func tokenExchange() -> Exchange {
        var e = Exchange(
            connectionID: 1, clientAddress: "127.0.0.1:50000", scheme: .https, host: "127.0.0.1", port: 8443,
            method: "POST", target: "/token", start: Date())
        let body =
            "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA.Vb3tYx8Kq2pLmN0cR7wHdE1fGhJkLzX"
            + "&redirect_uri=https%3A%2F%2Fclient.example.com%2Foauth%2Fcallback&client_id=s6BhdRkqt3"
            + "&code_verifier=dBjftJeZ4CVP-mJ92K1qW-0nS7ywGpXe3kFz5TrL8aQ"
        e.requestHeaders = [
            HeaderField("Host", "127.0.0.1:8443"), HeaderField("User-Agent", "curl/7.88.1"),
            HeaderField("Accept", "application/json"), HeaderField("Content-Type", "application/x-www-form-urlencoded"),
            HeaderField("Authorization", "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"),
            HeaderField("Content-Length", String(body.utf8.count)),
        ]
        e.requestBody = CapturedBody(bytes: Array(body.utf8), size: body.utf8.count)
        let header = #"{"alg": "RS256", "typ": "JWT", "kid": "bench-key-2026"}"#
        let claims =
            #"{"iss":"https://auth.example.com/","sub":"248289761001","aud":"https://api.example.com","#
            + #""azp":"s6BhdRkqt3","scope":"openid profile email offline_access","iat":1795339200,"exp":1795342800,"#
            + #""jti":"0f3a9c1d2e4b5a6978877665544332211","auth_time":1795339190,"amr":["pwd","mfa"]}"#
        let signature = JWT.base64URL((0..<256).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        let jwt = JWT.base64URL(Array(header.utf8)) + "." + JWT.base64URL(Array(claims.utf8)) + "." + signature
        let token =
            #"{"access_token":"\#(jwt)","token_type":"Bearer","expires_in":3600,"#
            + #""refresh_token":"Qm9vdHN0cmFwUmVmcmVzaFRva2VuMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3Bx","#
            + #""scope":"openid profile email offline_access"}"#
        e.status = 200
        e.responseHeaders = [
            HeaderField("Server", "nginx"), HeaderField("Date", "Mon, 23 Nov 2026 05:00:00 GMT"),
            HeaderField("Content-Type", "application/json"), HeaderField("Content-Length", String(token.utf8.count)),
            HeaderField("Connection", "keep-alive"), HeaderField("Cache-Control", "no-store"),
            HeaderField("Pragma", "no-cache"),
        ]
        e.responseBody = CapturedBody(bytes: Array(token.utf8), size: token.utf8.count)
        let tls = TLSFacts(version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", alpn: "http/1.1", sni: "127.0.0.1")
        e.clientTLS = tls
        var up = tls
        up.verification = "verified"
        up.peerCertificate = CertificateSummary(
            subject: "CN=127.0.0.1", issuer: "CN=bench test CA", sans: ["127.0.0.1", "::1", "localhost"],
            notBefore: Date(timeIntervalSince1970: 1_790_000_000), notAfter: Date(timeIntervalSince1970: 1_800_000_000),
            serial: "01")
        e.upstreamTLS = up
        e.connectionReused = true
        e.timings.requestSent = 0.05
        e.timings.firstByte = 0.2
        e.timings.end = 0.21
        return e
    }
}
