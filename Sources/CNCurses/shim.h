#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <locale.h>
#include <ncursesw/curses.h>

// Macros and globals are not visible to Swift 6 with strict concurrency: these static inline
// functions are, and they keep `stdscr`, `LINES`, `COLS` and the attribute macros out of Swift.
static inline WINDOW *authtap_stdscr(void) { return stdscr; }
static inline int authtap_lines(void) { return LINES; }
static inline int authtap_cols(void) { return COLS; }
static inline int authtap_color_pair(int n) { return (int)COLOR_PAIR(n); }
static inline int authtap_a_bold(void) { return (int)A_BOLD; }
static inline int authtap_a_reverse(void) { return (int)A_REVERSE; }
static inline int authtap_a_dim(void) { return (int)A_DIM; }
static inline int authtap_a_underline(void) { return (int)A_UNDERLINE; }
static inline int authtap_key_resize(void) { return KEY_RESIZE; }
static inline int authtap_setlocale_all(void) { return setlocale(LC_ALL, "") != 0; }
