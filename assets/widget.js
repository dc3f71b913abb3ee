/* livechat widget: filled in by the widget work. */
