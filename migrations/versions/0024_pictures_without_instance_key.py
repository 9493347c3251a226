"""imagesearch.pictures no longer has a foreign key to imagesearch.instances. Each instance's pictures are
its own partition, made with the instance and dropped with it in one transaction, so a picture cannot
outlive its instance either way. The key cost a deadlock: attaching or dropping a partition cloned or
dropped the key's triggers on imagesearch.instances (SHARE ROW EXCLUSIVE) while holding
imagesearch.pictures, and a write into another instance's partition holds instances (it counts its pictures
first) while it takes a lock on imagesearch.pictures.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE imagesearch.pictures DROP CONSTRAINT pictures_instance_id_fkey")


def downgrade() -> None:
    op.execute("ALTER TABLE imagesearch.pictures ADD CONSTRAINT pictures_instance_id_fkey"
               " FOREIGN KEY (instance_id) REFERENCES imagesearch.instances (id) ON DELETE CASCADE")
