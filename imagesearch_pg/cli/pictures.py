"""`imagesearch add | search | list | delete`: pictures of an instance."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from imagesearch_pg.cli import cli
from imagesearch_pg.cli.context import ServiceHolder, pass_service
from imagesearch_pg.cli.output import records
from imagesearch_pg.errors import ImageSearchError

PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


@cli.command()
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--product-id", help="ProductId for every picture (default: each file's stem).")
@click.option("--category-id", type=int, help="CategoryId (product instances).")
@click.option("--no-crop", is_flag=True, help="Use the whole picture, no subject detection.")
@pass_service
def add(holder: ServiceHolder, name, paths, product_id, category_id, no_crop) -> None:
    """Add pictures to instance NAME: files, or folders (every picture in them, recursively).

    A file's PicName is its file name; its ProductId is --product-id or the file's stem.
    """
    service = holder.get()
    service.describe_instance(name)  # fail early on a wrong name, before walking folders
    files = _picture_files(paths)
    failures = 0
    with click.progressbar(files, label="adding", file=sys.stderr, show_pos=True) as bar:
        for path in bar:
            try:
                service.add_image(
                    name, product_id or path.stem, path.name, path.read_bytes(),
                    category_id=category_id, crop=not no_crop,
                )
            except ImageSearchError as exc:
                failures += 1
                click.echo(f"\n{path}: {exc.code}: {exc.message}", err=True)
    click.echo(f"added {len(files) - failures} of {len(files)} pictures to {name}")
    if failures:
        sys.exit(1)


def _picture_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        else:
            files.append(path)  # named explicitly: its bytes decide whether it is a picture
    return files


@cli.command()
@click.argument("name")
@click.argument("picture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--num", type=int, default=10, show_default=True, help="How many results (1-100).")
@click.option("--start", type=int, default=0, show_default=True, help="Skip this many results first.")
@click.option("--filter", "filter_text", help='Attribute filter, e.g. \'int_attr>=10 AND str_attr="red"\'.')
@click.option("--no-crop", is_flag=True, help="Use the whole picture, no subject detection.")
@click.option("--distinct-product-id", is_flag=True, help="At most one result per ProductId (its best picture).")
@click.option("--score-threshold", type=float, help="Only results scoring at least this (0-1).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results, best first.")
@pass_service
def search(holder: ServiceHolder, name, picture, num, start, filter_text, no_crop, distinct_product_id,
           score_threshold, as_json) -> None:
    """Search instance NAME with PICTURE."""
    result = holder.get().search_by_picture(
        name, picture.read_bytes(), num=num, start=start, filter=filter_text, crop=not no_crop,
        distinct_product_id=distinct_product_id, score_threshold=score_threshold,
    )
    _print_matches(result.matches, as_json, ["ProductId", "PicName", "Score", "CategoryId"])


@cli.command("list")
@click.argument("name")
@click.option("--filter", "filter_text", required=True, help='Attribute filter, e.g. \'str_attr="red"\'.')
@click.option("--num", type=int, default=10, show_default=True, help="How many pictures (1-100).")
@click.option("--start", type=int, default=0, show_default=True, help="Skip this many first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_service
def list_pictures(holder: ServiceHolder, name, filter_text, num, start, as_json) -> None:
    """List the pictures of instance NAME whose attributes match a filter (by ProductId, then PicName)."""
    result = holder.get().search_by_filter(name, filter_text, num=num, start=start)
    _print_matches(result.matches, as_json, ["ProductId", "PicName", "CategoryId", "IntAttr", "StrAttr"])


def _print_matches(matches, as_json: bool, columns: list[str]) -> None:
    rows = [{**m.as_dict(), **({} if m.score is None else {"score": round(m.score, 6)})} for m in matches]
    records(rows, columns, as_json)


@cli.command()
@click.argument("name")
@click.option("--product-id", help="Delete this product's pictures.")
@click.option("--pic-name", help="Only this picture of the product.")
@click.option("--filter", "filter_text", help="Delete every picture whose attributes match this filter instead.")
@pass_service
def delete(holder: ServiceHolder, name, product_id, pic_name, filter_text) -> None:
    """Delete pictures from instance NAME: a product's, one picture, or those matching a filter."""
    if filter_text is None and product_id is None:
        raise click.UsageError("give --product-id (and perhaps --pic-name), or --filter")
    deleted = holder.get().delete_image(name, product_id, pic_name, filter=filter_text).pic_names
    click.echo(f"deleted {len(deleted)} picture(s)" + (": " + ", ".join(deleted) if deleted else ""))


@cli.command()
@click.argument("name")
@click.option("--min-score", type=float, default=0.95, show_default=True, help="Pairs scoring at least this (0-1).")
@click.option("--neighbours", type=int, default=10, show_default=True,
              help="How many nearest pictures of each picture are looked at (1-100).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of pairs, best first.")
@pass_service
def duplicates(holder: ServiceHolder, name, min_score, neighbours, as_json) -> None:
    """Pairs of different pictures of instance NAME that look alike, best first (imagesearch.duplicate_pairs)."""
    pairs = holder.get().duplicate_pairs(name, min_score, neighbours=neighbours)
    rows = [{"product_id_a": a, "pic_name_a": na, "product_id_b": b, "pic_name_b": nb, "score": round(score, 6)}
            for a, na, b, nb, score in pairs]
    records(rows, ["ProductIdA", "PicNameA", "ProductIdB", "PicNameB", "Score"], as_json)
    if not as_json:
        click.echo(f"{len(rows)} pair(s) at or above {min_score}", err=True)
