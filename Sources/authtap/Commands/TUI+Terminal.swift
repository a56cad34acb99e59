import AuthtapTUI
import CNCurses
import Foundation

/// The ncurses backend: copies the screen buffer out, reads keys, and restores the terminal on
/// every way out (quit, SIGINT/SIGTERM, a crash signal, an error).
enum Terminal {
    static func run(_ app: TUIApp) {
        _ = authtap_setlocale_all()
        initscr()
        atexit { endwin() }
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGABRT, SIGILL, SIGFPE, SIGBUS, SIGTRAP] {
            signal(sig) { s in
                endwin()
                signal(s, SIG_DFL)
                raise(s)
            }
        }
        cbreak()
        noecho()
        keypad(authtap_stdscr(), true)
        curs_set(0)
        set_escdelay(25)
        let useColor = has_colors() && ProcessInfo.processInfo.environment["NO_COLOR"].map(\.isEmpty) ?? true
        if useColor {
            start_color()
            use_default_colors()
            let colors: [Style.Color: Int16] = [
                .red: Int16(COLOR_RED), .yellow: Int16(COLOR_YELLOW), .green: Int16(COLOR_GREEN),
                .cyan: Int16(COLOR_CYAN), .magenta: Int16(COLOR_MAGENTA), .blue: Int16(COLOR_BLUE),
            ]
            for (c, n) in colors { init_pair(Int16(c.rawValue), n, -1) }
        }
        // Poll for keys every 250 ms so follow mode can pick up new rows.
        wtimeout(authtap_stdscr(), 250)
        var running = true
        while running {
            app.tick()
            draw(app, color: useColor)
            var ch: wint_t = 0
            let rc = wget_wch(authtap_stdscr(), &ch)
            if rc == ERR { continue }
            let code = rc == KEY_CODE_YES ? Int32(ch) : Int32(bitPattern: UInt32(ch))
            if code == authtap_key_resize() { continue }
            guard let key = KeyParser.parse(code) else { continue }
            running = app.handle(key)
        }
        endwin()
    }

    static func draw(_ app: TUIApp, color: Bool) {
        var buf = ScreenBuffer(rows: Int(authtap_lines()), cols: Int(authtap_cols()))
        app.render(&buf)
        werase(authtap_stdscr())
        for r in 0..<buf.rows {
            var c = 0
            while c < buf.cols {
                // One run of cells with the same style, drawn with one call.
                let style = buf.cell(r, c).style
                var text = ""
                let start = c
                while c < buf.cols, buf.cell(r, c).style == style {
                    text += buf.cell(r, c).text
                    c += 1
                }
                // The last cell of the screen cannot be written without scrolling in some terminals.
                if r == buf.rows - 1, c == buf.cols, !text.isEmpty { text.removeLast() }
                let attrs = attributes(style, color: color)
                wattrset(authtap_stdscr(), attrs)
                _ = mvwaddstr(authtap_stdscr(), Int32(r), Int32(start), text)
            }
        }
        wattrset(authtap_stdscr(), 0)
        wrefresh(authtap_stdscr())
    }

    static func attributes(_ s: Style, color: Bool) -> Int32 {
        var a: Int32 = 0
        if s.bold { a |= authtap_a_bold() }
        if s.reverse { a |= authtap_a_reverse() }
        if s.dim { a |= authtap_a_dim() }
        if color, let c = s.color { a |= authtap_color_pair(Int32(c.rawValue)) }
        if !color, s.color == .red || s.color == .magenta { a |= authtap_a_bold() }
        return a
    }
}
