import AuthtapModel
import Foundation

enum HandshakeLine {
    static func format(_ r: HandshakeRecord) -> String {
        // SNI, alerts and certificate names come from the packets: escaped for the terminal.
        let t: (String) -> String = { TerminalText.escape($0) }
        var s = "\(t(r.client)):\(r.clientPort) → \(t(r.server)):\(r.serverPort)  \(r.outcome.rawValue)"
        if let side = r.side { s += " by \(t(side))" }
        if let alert = r.alert { s += " [\(t(alert))]" }
        if let sni = r.sni { s += "  sni=\(t(sni))" }
        if let v = r.serverVersion { s += "  \(t(v))" }
        if let d = r.durationMs { s += String(format: "  %.1fms", d) }
        s += "  packets \(r.firstPacket)-\(r.lastPacket)"
        return s
    }
}
