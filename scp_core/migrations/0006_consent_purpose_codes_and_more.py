import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("scp_core", "0005_analyze_function"),
    ]

    operations = [
        migrations.AddField(
            model_name="consent",
            name="purpose_codes",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.AddField(
            model_name="historicalconsent",
            name="purpose_codes",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.CreateModel(
            name="Purpose",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("code", models.SlugField(max_length=40)),
                ("name", models.CharField(max_length=200)),
                ("investigation", models.BooleanField(
                    default=False,
                    help_text="Disclosures for this purpose may be embargoed from the person's report until a "
                              "release date the umbrella authority approves.")),
                ("tenant", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="purposes",
                                             to="scp_core.tenant")),
            ],
            options={
                "ordering": ["tenant", "code"],
                "constraints": [models.UniqueConstraint(fields=("tenant", "code"), name="purpose_code_unique_per_tenant")],
            },
        ),
    ]
