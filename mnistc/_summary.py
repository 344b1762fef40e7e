"""model.summary(): Keras's table of layers, output shapes and parameter counts."""


def readable_size(n_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024


def _count(n):
    return f"{n:,} ({readable_size(n * 4)})"


def render(model, show_trainable=False):
    heads = ["Layer (type)", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    rows = []
    for layer in model.layers:
        shape = "?" if layer.output_shape is None else str((None, *layer.output_shape))
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{layer.name} ({type(layer).__name__})", shape, params]
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")  # as Keras
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 if rows else len(h) + 2 for i, h in enumerate(heads)]
    widths[0] = max(widths[0], 31)
    widths[1] = max(widths[1], 22)
    widths[2] = max(widths[2], 13)

    def line(cells, sep="│", right=(2,)):
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            out.append(" " + (c.rjust(w - 2) if i in right else c.ljust(w - 2)) + " ")
        return sep + sep.join(out) + sep

    def rule(left, mid, right, ch):
        return left + mid.join(ch * w for w in widths) + right

    lines = [f'Model: "{model.name}"',
             rule("┏", "┳", "┓", "━"), line(heads, "┃"), rule("┡", "╇", "┩", "━")]
    for i, r in enumerate(rows):
        lines.append(line(r))
        if i + 1 < len(rows):
            lines.append(rule("├", "┼", "┤", "─"))
    lines.append(rule("└", "┴", "┘", "─"))
    trainable = sum(w.size for w in model.trainable_weights) if model.built else 0
    non_trainable = sum(w.size for w in model.non_trainable_weights) if model.built else 0
    opt = model.optimizer
    opt_params = 0
    if opt is not None and opt._segments is not None:
        opt_params = sum(s.size for s in opt._slots) + 2  # slots + iterations + learning_rate
    total = trainable + non_trainable + opt_params
    lines.append(f" Total params: {_count(total)}")
    lines.append(f" Trainable params: {_count(trainable)}")
    lines.append(f" Non-trainable params: {_count(non_trainable)}")
    if opt_params:
        lines.append(f" Optimizer params: {_count(opt_params)}")
    return "\n".join(lines)
