"""bench/RESULTS.md holds one section per benchmark, each rewritten by that benchmark's --write and
left alone by the others, plus the hand-kept sections between them."""
import re


def write_section(path, name, text):
    """Replace the section `name` of the file at path (between its markers) by text, or append it."""
    begin, end = f"<!-- {name}: written by bench/{name}.py --write -->", f"<!-- end of {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Benchmark results\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)
