# Django 3.2 and 5.2 both find this schema up to date (makemigrations --check).

from django.db import migrations, models


def add_categories(apps, schema_editor):
    Category = apps.get_model("shop", "Category")
    for name in ("books", "games", "tools"):
        Category.objects.get_or_create(name=name)


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Category',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=60, unique=True)),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.RunPython(add_categories, migrations.RunPython.noop),
    ]
