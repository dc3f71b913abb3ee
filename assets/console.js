/* livechat agent console: filled in by the console work. */
